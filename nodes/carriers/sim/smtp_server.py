"""The simulated mail relay, on aiosmtpd, served by this process's own event loop.

The reference is read from the ``X-Tenir-Reference`` header, else recovered from a Message-ID
made by :func:`nodes.carriers.smtp.message_id_for`. Faults are applied when the message is
complete (the DATA reply): ``refuse`` answers 554 5.7.1 (451 4.3.0 when ``refuse_temporary``),
``throttle`` 451 4.7.1 beyond the rate, ``timeout`` never answers, ``slow`` answers late.
A message carrying ``X-Tenir-Ack-Url`` has that link followed after the receipt delay, for the
``ack_rate`` fraction of references, as a person would: the link's page is opened (HTTP GET, which
acknowledges nothing: a mail scanner does as much) and its confirmation button pressed (the
page's form is POSTed).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import html
import logging
import re
import ssl
import uuid
import weakref
from email.message import EmailMessage
from typing import Final
from urllib.parse import urljoin

import aiohttp
from aiosmtpd.smtp import SMTP, Envelope, Session

from nodes.carriers.redact import mask_email
from nodes.carriers.sim.state import SimState, fraction
from nodes.carriers.smtp import ACK_URL_HEADER, REFERENCE_HEADER, reference_from_message_id
from nodes.tasks import TaskSet

log = logging.getLogger("tenir.sim.smtp")

DATA_SIZE_LIMIT: Final = 1 << 20
CLICK_TIMEOUT_S: Final = 5.0
_FORM: Final = re.compile(r'<form[^>]{0,200}?method="post"[^>]{0,200}?action="([^"]{0,2000})"',
                          re.IGNORECASE)


def confirmation_target(page_url: str, page: str) -> str | None:
    """The URL the confirmation page's form posts to, or None when the page has no form."""
    m = _FORM.search(page)
    return urljoin(page_url, html.unescape(m.group(1))) if m else None


class SmtpServer:
    def __init__(self, state: SimState, *, host: str, port: int, receipt_delay_s: float,
                 http: aiohttp.ClientSession, hostname: str,
                 tls: ssl.SSLContext | None = None) -> None:
        self.state = state
        self.host = host
        self.port = port
        self.receipt_delay_s = receipt_delay_s
        self.hostname = hostname
        self.tls = tls
        self._http = http
        self.stopping = asyncio.Event()
        self._protocols: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._clicks = TaskSet("smtp-clicks", log)
        self._server: asyncio.Server | None = None

    def _protocol(self) -> SMTP:
        # With TLS, STARTTLS is required before anything is sent (aiosmtpd refuses MAIL, RCPT
        # and DATA before it): no message crosses the network in clear.
        proto = SMTP(self, hostname=self.hostname, data_size_limit=DATA_SIZE_LIMIT,
                     enable_SMTPUTF8=True, timeout=60, loop=asyncio.get_running_loop(),
                     tls_context=self.tls, require_starttls=self.tls is not None)
        self._protocols.add(proto)
        return proto

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.close()
        for proto in list(self._protocols):
            if proto.transport is not None:
                proto.transport.close()
        await self._clicks.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    # -- aiosmtpd handler hooks -------------------------------------------------------------

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        msg = email.message_from_bytes(content, _class=EmailMessage, policy=email.policy.default)
        reference = msg.get(REFERENCE_HEADER) or reference_from_message_id(
            str(msg.get("Message-ID", ""))) or f"untagged:{uuid.uuid4().hex}"
        reference = str(reference).strip()
        settings = self.state.settings["email"]
        extra = {"reference": reference, "mode": settings.mode,
                 "to": ",".join(mask_email(r) for r in envelope.rcpt_tos)}
        if settings.mode == "timeout":
            log.debug("message left unanswered", extra={"event": "email_timeout", **extra})
            await self.stopping.wait()
            return "421 4.3.2 Service shutting down"
        if settings.mode == "slow":
            await asyncio.sleep(settings.delay_ms / 1000)
        if settings.mode == "refuse":
            reply = ("451 4.3.0 Temporary refusal, try again later" if settings.refuse_temporary
                     else "554 5.7.1 Message refused")
            log.debug("message refused", extra={"event": "email_refused", **extra})
            return reply
        if settings.mode == "throttle" and not self.state.throttle_allows("email"):
            log.debug("message throttled", extra={"event": "email_throttled", **extra})
            return "451 4.7.1 Rate limit exceeded, slow down"
        admission = self.state.record("email", reference, uuid.uuid4().hex)
        log.debug("message accepted", extra={
            "event": "email_accepted", **extra, "queue_id": admission.carrier_id,
            "duplicate": admission.duplicate, "answered_new": admission.answer_new})
        ack_url = msg.get(ACK_URL_HEADER)
        if ack_url and admission.answer_new and fraction(reference, "ack") < settings.ack_rate:
            self._clicks.spawn(self._click(str(ack_url).strip(), reference), name="smtp-click")
        return f"250 2.0.0 Ok: queued as {admission.carrier_id}"

    async def _click(self, url: str, reference: str) -> None:
        await asyncio.sleep(self.receipt_delay_s)
        if not url.startswith(("http://", "https://")):
            log.warning("ack link not followed", extra={"event": "email_click_skipped",
                                                        "reference": reference})
            return
        timeout = aiohttp.ClientTimeout(total=CLICK_TIMEOUT_S)
        try:
            async with self._http.get(url, timeout=timeout) as resp:
                status = resp.status
                page = await resp.text() if status == 200 else ""
            target = confirmation_target(url, page)
            if target is not None:
                async with self._http.post(target, timeout=timeout) as resp:
                    status = resp.status
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
            log.warning("ack link click failed", extra={"event": "email_click_failed",
                                                        "reference": reference,
                                                        "error": repr(exc)})
            return
        log.debug("ack link clicked", extra={"event": "email_clicked", "reference": reference,
                                            "status": status})
