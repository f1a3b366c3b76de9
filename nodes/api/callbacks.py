"""Carrier callbacks and acknowledgement links (no bearer token: the reference is the key).

* ``POST /api/v1/callbacks/voice``: the voice carrier's call status ``{reference, call_id,
  status, dtmf}``, interpreted by ``nodes.carriers.voice.parse_voice_callback`` (answered ->
  delivered, anything else -> failed; ``dtmf == "1"`` on an answered call acknowledges).
  The receipt, then the acknowledgement, are recorded in the store *before* the carrier gets
  its answer, so that nothing the carrier saw accepted is lost; then ``on_receipt`` and
  ``on_ack`` are told (the local dispatcher may be waiting on that reference).
* ``GET /api/v1/ack/{reference}``: the link of an e-mail that asks for an acknowledgement;
  records it (``via="link"``), tells ``on_ack``, answers a small "merci" page.

404, with nothing recorded, when the reference does not parse as
``campaign:recipient:channel:step.attempt`` of the route's channel or names no campaign. 404
too when the store does not know the acknowledged attempt (``record_acknowledgement`` is
False): the store keeps such an acknowledgement and applies it if the attempt is recorded
later, and the sinks are told anyway, so a callback that outran the dispatcher's outcome
write loses nothing. A failing sink is logged, not reported: the store holds the event.
"""

from __future__ import annotations

import html
import logging
import re

from aiohttp import web

from nodes.api.bodies import Fields, read_json_object
from nodes.api.context import ApiContext, context
from nodes.api.errors import ApiError, invalid, json_response
from nodes.api.spec import API, JSON, Body, Param, Resp, RouteSpec, ref
from nodes.carriers.base import Ack, Receipt
from nodes.carriers.voice import CALL_STATUSES, CallbackError, parse_voice_callback
from nodes.logs import campaign_context
from replication.store_api import NotFound

log = logging.getLogger("tenir.api.callbacks")

# campaign:recipient:channel:step.attempt (the dispatcher's reference_for); a bare attempt
# number, as store_api's docstring spells it, is accepted too.
_REFERENCE = re.compile(r"(\d{1,18}):(\d{1,18}):(sms|email|voice):\d{1,9}(?:\.\d{1,9})?\Z")


def parse_reference(reference: str, channel: str) -> int:
    """The campaign id of a well-formed reference of ``channel``; 404 for anything else."""
    m = _REFERENCE.match(reference)
    if m is None or m.group(3) != channel:
        raise ApiError(404, "unknown reference", "reference")
    return int(m.group(1))


async def _campaign_exists(ctx: ApiContext, campaign_id: int) -> None:
    try:
        await ctx.store.campaign_summary(campaign_id)
    except NotFound:
        raise ApiError(404, "unknown reference", "reference") from None


async def _tell_receipt(ctx: ApiContext, receipt: Receipt) -> None:
    if ctx.on_receipt is not None:
        try:
            await ctx.on_receipt(receipt)
        except Exception:
            log.exception("receipt sink failed for %s", receipt.reference)


async def _tell_ack(ctx: ApiContext, ack: Ack) -> None:
    if ctx.on_ack is not None:
        try:
            await ctx.on_ack(ack)
        except Exception:
            log.exception("acknowledgement sink failed for %s", ack.reference)


async def voice_callback(request: web.Request) -> web.Response:
    ctx = context(request)
    data = await read_json_object(request)
    Fields(data, ("reference", "call_id", "status", "dtmf"))
    try:
        receipt, ack = parse_voice_callback(data)
    except CallbackError as e:
        raise invalid(e.field, e.problem) from None
    campaign_id = parse_reference(receipt.reference, "voice")
    with campaign_context(campaign_id):
        try:
            await _campaign_exists(ctx, campaign_id)
        except ApiError:
            ctx.metrics.callbacks.inc(kind="voice", result="unknown")
            raise
        await ctx.store.record_receipt(receipt.reference, receipt.state,
                                       receipt.carrier_message_id)
        known = ack is not None and await ctx.store.record_acknowledgement(
            receipt.reference, via="dtmf")
        await _tell_receipt(ctx, receipt)
        if ack is not None:
            await _tell_ack(ctx, ack)
        log.info("voice callback %s: %s%s", receipt.reference, receipt.detail,
                 ", acknowledged" if ack is not None else "")
        if ack is not None and not known:
            ctx.metrics.callbacks.inc(kind="voice", result="unknown")
            raise ApiError(404, "unknown reference (acknowledgement kept until its attempt "
                           "is recorded)", "reference")
    ctx.metrics.callbacks.inc(kind="voice", result="acknowledged" if ack else receipt.state)
    return json_response({"reference": receipt.reference, "receipt": receipt.state,
                          "acknowledged": ack is not None})


_PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p></body></html>
"""
_PAGE_HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex", "Content-Security-Policy": "default-src 'none'",
}


def _page(status: int, title: str, text: str) -> web.Response:
    return web.Response(
        text=_PAGE.format(title=html.escape(title), text=html.escape(text)), status=status,
        content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS,
    )


async def ack_link(request: web.Request) -> web.Response:
    ctx = context(request)
    reference = request.match_info["reference"]
    try:
        campaign_id = parse_reference(reference, "email")
        with campaign_context(campaign_id):
            await _campaign_exists(ctx, campaign_id)
            known = await ctx.store.record_acknowledgement(reference, via="link")
            await _tell_ack(ctx, Ack(reference=reference, via="link"))
            log.info("acknowledgement link %s: %s", reference, "recorded" if known else "kept")
            if not known:
                raise ApiError(404, "unknown reference", "reference")
    except ApiError:
        ctx.metrics.callbacks.inc(kind="link", result="unknown")
        return _page(404, "Lien inconnu",
                     "Ce lien d'accusé de réception n'est pas valide ou a expiré.")
    ctx.metrics.callbacks.inc(kind="link", result="acknowledged")
    return _page(200, "Merci", "Votre accusé de réception est enregistré. "
                 "Vous pouvez fermer cette page.")


_REF_PATTERN = r"^\d+:\d+:%s:\d+(\.\d+)?$"

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
              "Call status and DTMF from the voice carrier", "callbacks",
              {200: Resp("recorded", ref("VoiceCallbackResult"))},
              body=Body("application/json", ref("VoiceCallback")), errors=(404,)),
    RouteSpec("GET", f"{API}/ack/{{reference}}", ack_link, "public", "acknowledgeLink",
              "Acknowledgement link of an e-mail", "callbacks",
              {200: Resp("thank-you page", {"type": "string"}, "text/html"),
               404: Resp("unknown reference", {"type": "string"}, "text/html")},
              params=(Param("reference", "path", {"type": "string",
                                                  "pattern": _REF_PATTERN % "email"},
                            "campaign:recipient:email:step.attempt", True),)),
)
