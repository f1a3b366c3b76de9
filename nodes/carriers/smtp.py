"""E-mail carrier adapter: SMTP submission with aiosmtplib.

* The reference goes in ``X-Tenir-Reference`` and in a Message-ID derived from it
  (:func:`message_id_for`), so a relay can deduplicate on either.
* Acceptance by the relay (250 to DATA) is the delivery receipt: ``on_receipt`` gets a
  ``delivered`` receipt right after.
* A 4xx reply is retryable (and ``throttled`` when it is a 4.7.x policy/rate reply or says
  "rate"); a 5xx is not. Timeouts and connection failures are retryable.
* With ``ack == "link"``, the message's ``callback_url`` is the acknowledgement link: it is put in
  the body and in ``X-Tenir-Ack-Url``. The click reaches the node's own API, not this adapter.
* A message this channel cannot carry (an ack rule other than none/link, a link without URL, a
  malformed address) is refused, not retryable; only wiring mistakes (wrong channel, ``send``
  before ``start``) raise.
* Connections are pooled, at most ``window`` of them; an idle connection the relay has closed is
  replaced transparently, once, before anything was accepted on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate
from typing import Final

import aiosmtplib

from nodes.carriers.base import Ack, AckSink, Message, Receipt, ReceiptSink, SendResult
from nodes.carriers.flow import FlowControl, LocalBusy
from nodes.carriers.redact import mask_email
from nodes.tasks import TaskSet
from replication.store_api import Channel

log = logging.getLogger("tenir.carriers.smtp")

REFERENCE_HEADER: Final = "X-Tenir-Reference"
ACK_URL_HEADER: Final = "X-Tenir-Ack-Url"
_MSGID_PREFIX: Final = "tenir."
_REVERSIBLE: Final = re.compile(r"^[A-Za-z0-9_:-]{1,200}$")
_MSGID: Final = re.compile(r"^\s*<?([^@<>\s]+)@[^>]*>?\s*$")


def message_id_for(reference: str, domain: str) -> str:
    """``12:345:email:1`` -> ``<tenir.12.345.email.1@domain>``; references outside
    ``[A-Za-z0-9_:-]`` get a digest instead (stable, but not reversible)."""
    if _REVERSIBLE.match(reference):
        left = _MSGID_PREFIX + reference.replace(":", ".")
    else:
        left = "tenir-h." + hashlib.sha256(reference.encode()).hexdigest()[:40]
    return f"<{left}@{domain}>"


def reference_from_message_id(message_id: str) -> str | None:
    m = _MSGID.match(message_id)
    if not m or not m.group(1).startswith(_MSGID_PREFIX):
        return None
    return m.group(1)[len(_MSGID_PREFIX):].replace(".", ":") or None


class _Conn:
    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.idle_since = time.monotonic()


class SmtpAdapter:
    channel: Channel = "email"

    def __init__(
        self, *, host: str, port: int, sender: str, name: str = "smtp",
        domain: str | None = None, username: str | None = None, password: str | None = None,
        start_tls: bool | None = False, local_hostname: str = "tenir.invalid",
        subject: str = "Alerte", window: int = 4, rate_per_s: float | None = None,
        timeout_s: float = 10.0, max_wait_s: float | None = None, max_idle_s: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if "@" not in sender:
            raise ValueError("sender: must be an e-mail address")
        if timeout_s <= 0:
            raise ValueError("timeout_s: must be > 0")
        self.name = name
        self.host = host
        self.port = port
        self.sender = sender
        self.domain = domain or sender.rpartition("@")[2]
        self.subject = subject
        self.timeout_s = timeout_s
        self.max_idle_s = max_idle_s
        self._username = username
        self._password = password
        # With ``tls``, STARTTLS is required and the server verified with that context.
        self._tls = tls
        self._start_tls = True if tls is not None else start_tls
        self._local_hostname = local_hostname
        self._flow = FlowControl(window, rate_per_s, max_wait_s)
        self._idle: list[_Conn] = []
        self._on_receipt: ReceiptSink | None = None
        self._on_ack: AckSink | None = None
        self._tasks = TaskSet(f"{name}-receipts", log)
        self._started = False
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet answered by the carrier (at most ``window``)."""
        return self._flow.in_flight

    async def start(self, on_receipt: ReceiptSink, on_ack: AckSink) -> None:
        """Register the sinks and open a first connection (none if the relay does not answer:
        sends connect as they need)."""
        if self._started:
            return
        self._on_receipt, self._on_ack = on_receipt, on_ack
        try:
            conn = await asyncio.wait_for(self._connect(), self.timeout_s)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # a relay down at the node's start is a channel down (each send connects again),
            # not a reason for the node to exit
            log.warning("relay unreachable at start: each send connects again",
                        extra={"event": "smtp_start_unreachable", "carrier": self.name,
                               "error": f"{self.host}:{self.port}: {exc}"})
        else:
            self._idle.append(conn)
        self._started = True
        log.info("smtp adapter started", extra={"event": "smtp_started", "carrier": self.name})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._discard(conn, polite=True)
        await self._tasks.close()

    def build(self, message: Message) -> EmailMessage:
        """The e-mail for ``message`` (public so a node can preview what is sent)."""
        if message.ack not in ("none", "link"):
            raise ValueError(f"ack: an e-mail can only be acknowledged by a link, "
                             f"not {message.ack!r}")
        if message.ack == "link" and not message.callback_url:
            raise ValueError("callback_url: required when ack is 'link'")
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = self.subject
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = message_id_for(message.reference, self.domain)
        mail[REFERENCE_HEADER] = message.reference
        body = message.text
        if message.ack == "link" and message.callback_url:
            mail[ACK_URL_HEADER] = message.callback_url
            body = f"{body}\n\nConfirmer la réception / Acknowledge: {message.callback_url}\n"
        mail.set_content(body)
        return mail

    async def send(self, message: Message) -> SendResult:
        if message.channel != "email":
            raise ValueError(f"channel: {self.name} sends e-mail, not {message.channel!r}")
        if not self._started:
            raise RuntimeError(f"{self.name}: send() before start()")
        try:
            mail = self.build(message)
        except ValueError as exc:  # a scenario/data mistake: refuse it, let the caller fall back
            log.error("message cannot be sent by e-mail", extra={
                "event": "email_invalid", "carrier": self.name, "reference": message.reference,
                "error": str(exc)})
            return SendResult(False, error=f"invalid message: {exc}", retryable=False)
        if self._closed:
            return SendResult(False, error="adapter closed", retryable=True)
        extra = {"carrier": self.name, "reference": message.reference,
                 "to": mask_email(message.to)}
        try:
            async with self._flow.slot():
                result = await self._deliver(mail)
        except LocalBusy as exc:
            return SendResult(False, error=str(exc), retryable=True)
        if result.accepted:
            receipt = Receipt(message.reference, result.carrier_message_id, "delivered",
                              detail="accepted by relay")
            self._tasks.spawn(self._report(receipt), name="smtp-receipt")
            log.debug("e-mail accepted", extra={"event": "email_sent", **extra})
        else:
            log.info("e-mail not accepted", extra={"event": "email_not_sent", **extra,
                                                   "error": result.error,
                                                   "retryable": result.retryable})
        return result

    async def _deliver(self, mail: EmailMessage) -> SendResult:
        message_id = str(mail["Message-ID"])
        try:
            async with asyncio.timeout(self.timeout_s):
                for attempt in (1, 2):
                    conn, reused = await self._checkout()
                    try:
                        _rejected, reply = await conn.client.send_message(mail)
                    except aiosmtplib.SMTPServerDisconnected:
                        await self._discard(conn)
                        if reused and attempt == 1:
                            continue  # the relay had closed an idle connection: once more
                        raise
                    except BaseException:
                        await self._discard(conn)
                        raise
                    self._checkin(conn)
                    log.debug("relay reply", extra={"event": "smtp_reply", "reply": reply})
                    return SendResult(True, carrier_message_id=message_id)
        except TimeoutError:
            return SendResult(False, error=f"no reply within {self.timeout_s} s", retryable=True)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0] if exc.recipients else None
            if first is None:
                return SendResult(False, error="recipients refused", retryable=False)
            return _from_reply(first.code, first.message)
        except aiosmtplib.SMTPResponseException as exc:
            return _from_reply(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return SendResult(False, error=f"{type(exc).__name__}: {exc}", retryable=True)
        return SendResult(False, error="unreachable", retryable=True)  # pragma: no cover

    async def _connect(self) -> _Conn:
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, timeout=self.timeout_s,
            local_hostname=self._local_hostname, start_tls=self._start_tls,
            username=self._username, password=self._password, tls_context=self._tls,
        )
        await client.connect()
        return _Conn(client)

    async def _checkout(self) -> tuple[_Conn, bool]:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.client.is_connected and now - conn.idle_since < self.max_idle_s:
                return conn, True
            await self._discard(conn, polite=True)
        return await self._connect(), False

    def _checkin(self, conn: _Conn) -> None:
        if self._closed:
            self._tasks.spawn(self._discard(conn, polite=True), name="smtp-discard")
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def _discard(self, conn: _Conn, *, polite: bool = False) -> None:
        client = conn.client
        if polite and client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await client.quit(timeout=1.0)
        client.close()

    async def _report(self, receipt: Receipt) -> None:
        if self._on_receipt is not None:
            await self._on_receipt(receipt)

    async def handle_click(self, reference: str) -> None:
        """For the node's API route that serves the acknowledgement link."""
        if self._on_ack is not None:
            await self._on_ack(Ack(reference, via="link"))


def _from_reply(code: int, text: str) -> SendResult:
    error = f"{code} {text}".strip()
    if 400 <= code < 500:
        throttled = bool(re.search(r"\b4\.7\.\d+\b", text)) or "rate" in text.lower()
        return SendResult(False, error=error, retryable=True, throttled=throttled)
    return SendResult(False, error=error, retryable=False)
