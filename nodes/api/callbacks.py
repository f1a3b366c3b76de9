"""The voice carrier's call-status callback (no bearer token: signatures instead).

``POST /api/v1/callbacks/voice?sig=...`` with ``{reference, call_id, status, dtmf}``, interpreted
by ``nodes.carriers.voice.parse_voice_callback`` (answered -> delivered, anything else ->
failed; ``dtmf == "1"`` on an answered call acknowledges). Before anything is stored:

1. the carrier's signature over the body and time (``X-Tenir-Carrier-Signature``,
   ``nodes/carriers/callback_auth.py``): 401 when missing, wrong or stale, 409 for a replay;
2. the body (JSON object of these four fields at most: 400/422 naming the problem);
3. the reference's shape (404) and the URL's ``sig``, which this node computed for that
   reference when it placed the call (``nodes/signing.py``): 403 when missing or wrong;
4. the store's verdict, given whether this node's dispatcher waits on the reference: an
   acknowledgement of a recipient already final is 409, one of an attempt not made (nor in
   flight) 409, one of no such recipient 404; a receipt of an attempt neither recorded nor in
   flight 404. Refused callbacks store nothing.

What is accepted is recorded before the carrier gets its answer, then ``on_receipt`` and
``on_ack`` are told (the local dispatcher waits on them). A failing sink is logged, not
reported: the store holds the event.
"""

from __future__ import annotations

import logging

from aiohttp import web

from nodes.api.ack_checks import (
    REFUSALS,
    Refused,
    check_ack_verdict,
    check_reference,
    check_signature,
    in_flight,
    refused,
)
from nodes.api.bodies import Fields, parse_json_object, read_body
from nodes.api.context import ApiContext, context
from nodes.api.errors import ApiError, invalid, json_response
from nodes.api.spec import API, JSON, Body, Param, Resp, RouteSpec, ref
from nodes.carriers.base import Ack, Receipt
from nodes.carriers.callback_auth import HEADER
from nodes.carriers.voice import CALL_STATUSES, CallbackError, parse_voice_callback
from nodes.logs import campaign_context

log = logging.getLogger("tenir.api.callbacks")

KIND = "voice"


async def tell_receipt(ctx: ApiContext, receipt: Receipt) -> None:
    if ctx.on_receipt is not None:
        try:
            await ctx.on_receipt(receipt)
        except Exception:
            log.exception("receipt sink failed for %s", receipt.reference)


async def tell_ack(ctx: ApiContext, ack: Ack) -> None:
    if ctx.on_ack is not None:
        try:
            await ctx.on_ack(ack)
        except Exception:
            log.exception("acknowledgement sink failed for %s", ack.reference)


async def _record(ctx: ApiContext, request: web.Request, receipt: Receipt,
                  ack: Ack | None) -> None:
    waiting = in_flight(ctx, receipt.reference)
    if ack is not None:
        check_ack_verdict(ctx, request, KIND, await ctx.store.record_acknowledgement(
            ack.reference, via="dtmf", in_flight=waiting))
    verdict = await ctx.store.record_receipt(receipt.reference, receipt.state,
                                             receipt.carrier_message_id, in_flight=waiting)
    if verdict == "unknown" and ack is None:
        raise refused(ctx, request, KIND, "unknown")


async def voice_callback(request: web.Request) -> web.Response:
    ctx = context(request)
    raw = await read_body(request, "application/json")
    try:
        carrier = ctx.carrier_auth.verify(request.headers.get(HEADER), raw)
        if carrier != "ok":
            raise refused(ctx, request, KIND, carrier)
        data = parse_json_object(raw)
        Fields(data, ("reference", "call_id", "status", "dtmf"))
        try:
            receipt, ack = parse_voice_callback(data)
        except CallbackError as e:
            raise invalid(e.field, e.problem) from None
        campaign_id = check_reference(ctx, request, KIND, receipt.reference, "voice")
        check_signature(ctx, request, KIND, "voice", receipt.reference)
        with campaign_context(campaign_id):
            await _record(ctx, request, receipt, ack)
            await tell_receipt(ctx, receipt)
            if ack is not None:
                await tell_ack(ctx, ack)
            log.info("voice callback %s: %s%s", receipt.reference, receipt.detail,
                     ", acknowledged" if ack is not None else "")
    except Refused as e:
        field = "reference" if e.refusal.status in (403, 404, 409) else HEADER
        raise ApiError(e.refusal.status, e.refusal.error, field,
                       extra={"reason": e.reason}) from None
    ctx.metrics.callbacks.inc(kind=KIND, result="acknowledged" if ack else receipt.state)
    return json_response({"reference": receipt.reference, "receipt": receipt.state,
                          "acknowledged": ack is not None})


_REF_PATTERN = r"^\d+:\d+:%s:\d+(\.\d+)?$"
SIG = Param("sig", "query", {"type": "string", "maxLength": 60},
            "the signature this node put in the URL it gave out: <key id>.<HMAC>", True)

SCHEMAS: dict[str, JSON] = {
    "VoiceCallback": {
        "type": "object", "additionalProperties": False, "required": ["reference", "status"],
        "properties": {
            "reference": {"type": "string", "pattern": _REF_PATTERN % "voice",
                          "description": "campaign:recipient:voice:step.attempt"},
            "call_id": {"type": ["string", "null"]},
            "status": {"enum": list(CALL_STATUSES),
                       "description": "answered -> delivered; anything else -> failed"},
            "dtmf": {"type": ["string", "null"],
                     "description": "'1' on an answered call acknowledges"},
        },
    },
    "VoiceCallbackResult": {
        "type": "object", "required": ["reference", "receipt", "acknowledged"],
        "properties": {
            "reference": {"type": "string"},
            "receipt": {"enum": ["delivered", "failed"]},
            "acknowledged": {"type": "boolean",
                             "description": "the callback carried an acknowledgement"},
        },
    },
}

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", f"{API}/callbacks/voice", voice_callback, "public", "voiceCallback",
              "Call status and DTMF from the voice carrier (signed by the carrier, at a URL "
              "signed by this node)", "callbacks",
              {200: Resp("recorded", ref("VoiceCallbackResult"))},
              body=Body("application/json", ref("VoiceCallback"),
                        f"signed by the carrier in the {HEADER} header"),
              params=(SIG,),
              errors=tuple(sorted({r.status for r in REFUSALS.values()}))),
)
