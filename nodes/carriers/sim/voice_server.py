"""The simulated voice carrier: an HTTP call-control API (aiohttp).

``POST /v1/calls`` with JSON ``{reference, to, text, ack, callback_url}`` answers ``201
{call_id, duplicate}``; after the receipt delay the call's outcome is POSTed to
``callback_url`` as ``{reference, call_id, status, dtmf}`` with status ``answered``,
``no-answer``, ``busy`` or ``failed``, and dtmf ``"1"`` when an answered call that asked for a
DTMF acknowledgement got one. The outcome is a pure function of the reference and the
``answer_rate``/``ack_rate`` settings (see :func:`call_outcome`).

Faults: ``refuse`` answers 403 (503 when ``refuse_temporary``), ``throttle`` 429 beyond the rate,
``timeout`` never answers, ``slow`` answers late; ``drop_receipts`` sends no callback.
A duplicate at a deduplicating carrier places no new call, but its status is reported again.
With a ``callback_secret``, each callback carries ``X-Tenir-Carrier-Signature`` over its body
and the time (``nodes/carriers/callback_auth.py``), as a real carrier signs its webhooks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import uuid
from typing import Any, Final, get_args

import aiohttp
from aiohttp import web

from nodes.carriers.callback_auth import HEADER, sign_callback
from nodes.carriers.redact import mask_phone
from nodes.carriers.sim.state import ChannelSettings, SimState, fraction
from nodes.tasks import TaskSet
from replication.store_api import AckRule

log = logging.getLogger("tenir.sim.voice")

CALLBACK_TIMEOUT_S: Final = 5.0
FAILURES: Final = ("no-answer", "busy", "failed")
_PHONE = re.compile(r"^\+?[0-9]{3,20}$")


def call_outcome(reference: str, ack: str, settings: ChannelSettings) -> tuple[str, str | None]:
    """(status, dtmf) of the call for ``reference``: reproducible from the reference alone."""
    if fraction(reference, "answer") >= settings.answer_rate:
        return FAILURES[min(2, int(fraction(reference, "fail") * 3))], None
    if ack == "dtmf" and fraction(reference, "ack") < settings.ack_rate:
        return "answered", "1"
    return "answered", None


def _error(status: int, field: str, problem: str) -> web.Response:
    return web.json_response({"error": f"{field}: {problem}", "field": field}, status=status)


def _validate(body: object) -> dict[str, str] | web.Response:
    if not isinstance(body, dict):
        return _error(400, "body", "must be a JSON object")
    for name in ("reference", "to", "text", "callback_url"):
        if not isinstance(body.get(name), str) or not body[name]:
            return _error(400, name, "required, a non-empty string")
    if len(body["reference"]) > 256:
        return _error(400, "reference", "at most 256 characters")
    if not _PHONE.match(body["to"]):
        return _error(400, "to", "must be a phone number")
    if not body["callback_url"].startswith(("http://", "https://")):
        return _error(400, "callback_url", "must be an http(s) URL")
    ack = body.get("ack", "none")
    if ack not in get_args(AckRule):
        return _error(400, "ack", f"must be one of {', '.join(get_args(AckRule))}")
    return {"reference": body["reference"], "to": body["to"], "text": body["text"],
            "ack": ack, "callback_url": body["callback_url"]}


class VoiceServer:
    def __init__(self, state: SimState, *, host: str, port: int, receipt_delay_s: float,
                 http: aiohttp.ClientSession, callback_secret: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.state = state
        self.tls = tls
        self._callback_secret = callback_secret
        self.host = host
        self.port = port
        self.receipt_delay_s = receipt_delay_s
        self._http = http
        self.stopping = asyncio.Event()
        self._callbacks = TaskSet("voice-callbacks", log)
        app = web.Application()
        app.router.add_post("/v1/calls", self._create_call)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                     shutdown_timeout=1.0)

    async def start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        self.stopping.set()
        await self._callbacks.close()
        await self._runner.cleanup()

    async def _create_call(self, request: web.Request) -> web.StreamResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            return _error(400, "body", "must be JSON")
        call = _validate(body)
        if isinstance(call, web.Response):
            return call
        reference = call["reference"]
        settings = self.state.settings["voice"]
        extra = {"reference": reference, "to": mask_phone(call["to"]), "mode": settings.mode}
        if settings.mode == "timeout":
            log.debug("call request left unanswered", extra={"event": "voice_timeout", **extra})
            await self.stopping.wait()
            return _error(503, "service", "shutting down")
        if settings.mode == "slow":
            await asyncio.sleep(settings.delay_ms / 1000)
        if settings.mode == "refuse":
            log.debug("call refused", extra={"event": "voice_refused", **extra})
            if settings.refuse_temporary:
                return _error(503, "service", "temporarily refusing calls")
            return _error(403, "service", "calls refused")
        if settings.mode == "throttle" and not self.state.throttle_allows("voice"):
            log.debug("call throttled", extra={"event": "voice_throttled", **extra})
            return web.json_response({"error": "throttled"}, status=429,
                                     headers={"Retry-After": "1"})
        admission = self.state.record("voice", reference, f"call-{uuid.uuid4().hex}")
        log.debug("call accepted", extra={"event": "voice_accepted", **extra,
                                         "call_id": admission.carrier_id,
                                         "duplicate": admission.duplicate})
        if not settings.drop_receipts:
            status, dtmf = call_outcome(reference, call["ack"], settings)
            payload = {"reference": reference, "call_id": admission.carrier_id,
                       "status": status, "dtmf": dtmf}
            self._callbacks.spawn(self._callback(call["callback_url"], payload),
                                  name="voice-callback")
        return web.json_response({"call_id": admission.carrier_id,
                                  "duplicate": admission.duplicate}, status=201)

    async def _callback(self, url: str, payload: dict[str, Any]) -> None:
        await asyncio.sleep(self.receipt_delay_s)
        extra = {"reference": payload["reference"], "call_id": payload["call_id"],
                 "status": payload["status"]}
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self._callback_secret is not None:
            headers[HEADER] = sign_callback(self._callback_secret, body)
        try:
            async with self._http.post(
                url, data=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S),
            ) as resp:
                code = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("call status callback failed",
                        extra={"event": "voice_callback_failed", **extra, "error": repr(exc)})
            return
        log.debug("call status reported", extra={"event": "voice_callback", **extra,
                                                "http_status": code})
