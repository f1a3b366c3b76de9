"""Voice carrier adapter: an HTTP call-control API, with aiohttp.

``send`` places a call with ``POST {base_url}/v1/calls`` and JSON ``{reference, to, text, ack,
callback_url}``: 201 (or any 2xx) is accepted, with the carrier's ``call_id``; 429 is throttled and
retryable; 408 and 5xx are retryable; other 4xx are not. Timeouts and connection errors are
retryable. A message a call cannot carry (no callback URL, an ack rule other than none/dtmf) is
refused, not retryable; only wiring mistakes (wrong channel, ``send`` before ``start``) raise.

The call's outcome comes back later as a POST to ``callback_url``, which is the node's API, not
this adapter: the route calls :func:`parse_voice_callback` (or :meth:`VoiceAdapter.handle_callback`,
which also hands the result to the sinks given to ``start``).
"""

from __future__ import annotations

import logging
import ssl
from typing import Any, Final

import aiohttp

from nodes.carriers.base import Ack, AckSink, Message, Receipt, ReceiptSink, SendResult
from nodes.carriers.flow import FlowControl, LocalBusy
from nodes.carriers.redact import mask_phone
from replication.store_api import Channel

log = logging.getLogger("tenir.carriers.voice")

CALL_STATUSES: Final = ("answered", "no-answer", "busy", "failed")
ACK_DIGIT: Final = "1"


class CallbackError(ValueError):
    """A call-status callback refused; ``field`` names the field at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def parse_voice_callback(payload: object) -> tuple[Receipt, Ack | None]:
    """A call-status callback ``{reference, call_id, status, dtmf}`` -> the call's receipt
    (delivered when answered, failed otherwise) and, when the callee pressed 1, its
    acknowledgement. Raises :class:`CallbackError` naming the bad field."""
    if not isinstance(payload, dict):
        raise CallbackError("body", "must be a JSON object")
    reference = payload.get("reference")
    if not isinstance(reference, str) or not reference.strip():
        raise CallbackError("reference", "required, a non-empty string")
    call_id = payload.get("call_id")
    if call_id is not None and not isinstance(call_id, str):
        raise CallbackError("call_id", "must be a string")
    status = payload.get("status")
    if status not in CALL_STATUSES:
        raise CallbackError("status", f"must be one of {', '.join(CALL_STATUSES)}")
    dtmf = payload.get("dtmf")
    if dtmf is not None and not isinstance(dtmf, str):
        raise CallbackError("dtmf", "must be a string or null")
    reference = reference.strip()
    answered = status == "answered"
    receipt = Receipt(reference, call_id or None, "delivered" if answered else "failed",
                      detail=str(status))
    ack = Ack(reference, via="dtmf") if answered and (dtmf or "").strip() == ACK_DIGIT else None
    return receipt, ack


class VoiceAdapter:
    channel: Channel = "voice"

    def __init__(
        self, *, base_url: str, name: str = "voice", callback_url: str | None = None,
        api_key: str | None = None, window: int = 50, rate_per_s: float | None = None,
        timeout_s: float = 10.0, max_wait_s: float | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url: must be an http(s) URL")
        if timeout_s <= 0:
            raise ValueError("timeout_s: must be > 0")
        self.name = name
        self.calls_url = base_url.rstrip("/") + "/v1/calls"
        self.callback_url = callback_url
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._flow = FlowControl(window, rate_per_s, max_wait_s)
        self._window = window
        self._tls = tls  # how an https carrier is verified (None: the system's CAs)
        self._session: aiohttp.ClientSession | None = None
        self._on_receipt: ReceiptSink | None = None
        self._on_ack: AckSink | None = None
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet answered by the carrier (at most ``window``)."""
        return self._flow.in_flight

    async def start(self, on_receipt: ReceiptSink, on_ack: AckSink) -> None:
        if self._session is not None:
            return
        self._on_receipt, self._on_ack = on_receipt, on_ack
        connector = aiohttp.TCPConnector(limit=self._window,
                                         ssl=self._tls if self._tls is not None else True)
        self._session = aiohttp.ClientSession(connector=connector, headers=self._headers,
                                              raise_for_status=False)
        log.info("voice adapter started", extra={"event": "voice_started", "carrier": self.name})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._session is not None:
            await self._session.close()

    async def send(self, message: Message) -> SendResult:
        if message.channel != "voice":
            raise ValueError(f"channel: {self.name} places calls, not {message.channel!r}")
        if self._session is None:
            raise RuntimeError(f"{self.name}: send() before start()")
        callback_url = message.callback_url or self.callback_url
        problem = ("callback_url: required (in the message or the adapter)" if not callback_url
                   else None if message.ack in ("none", "dtmf")
                   else f"ack: a call can only be acknowledged by DTMF, not {message.ack!r}")
        if problem is not None or callback_url is None:
            log.error("message cannot be sent by voice", extra={
                "event": "voice_invalid", "carrier": self.name, "reference": message.reference,
                "error": problem})
            return SendResult(False, error=f"invalid message: {problem}", retryable=False)
        if self._closed:
            return SendResult(False, error="adapter closed", retryable=True)
        body = {"reference": message.reference, "to": message.to, "text": message.text,
                "ack": message.ack, "callback_url": callback_url}
        try:
            async with self._flow.slot():
                result = await self._post(body)
        except LocalBusy as exc:
            return SendResult(False, error=str(exc), retryable=True)
        if not result.accepted:
            log.info("call not placed", extra={
                "event": "voice_not_sent", "carrier": self.name, "reference": message.reference,
                "to": mask_phone(message.to), "error": result.error,
                "retryable": result.retryable})
        return result

    async def _post(self, body: dict[str, Any]) -> SendResult:
        assert self._session is not None
        try:
            async with self._session.post(
                self.calls_url, json=body, timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ) as resp:
                status = resp.status
                try:
                    data: Any = await resp.json(content_type=None)
                except ValueError:
                    data = None
        except TimeoutError:
            return SendResult(False, error=f"no answer within {self.timeout_s} s",
                              retryable=True)
        except (aiohttp.ClientError, OSError) as exc:
            return SendResult(False, error=f"{type(exc).__name__}: {exc}", retryable=True)
        detail = data.get("error") if isinstance(data, dict) else None
        if 200 <= status < 300:
            call_id = data.get("call_id") if isinstance(data, dict) else None
            return SendResult(True, carrier_message_id=call_id if isinstance(call_id, str)
                              else None)
        error = f"HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429:
            return SendResult(False, error=error, retryable=True, throttled=True)
        if status >= 500 or status == 408:
            return SendResult(False, error=error, retryable=True)
        return SendResult(False, error=error, retryable=False)

    async def handle_callback(self, payload: object) -> tuple[Receipt, Ack | None]:
        """Parse a call-status callback and hand it to the sinks (receipt first)."""
        receipt, ack = parse_voice_callback(payload)
        if self._on_receipt is not None:
            await self._on_receipt(receipt)
        if ack is not None and self._on_ack is not None:
            await self._on_ack(ack)
        return receipt, ack
