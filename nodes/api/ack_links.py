"""The acknowledgement link of an e-mail: a page, then a button.

* ``GET /api/v1/ack/{reference}?sig=...`` checks the reference's shape and the link's signature
  (``nodes/signing.py``) and shows a confirmation page; it records nothing, so that a mail
  scanner or a browser prefetching the link acknowledges nothing.
* The page's button POSTs to the same URL: checked again, then recorded (``via="link"``) if the
  store accepts it (its recipient is pending and its attempt recorded, or in flight here), and
  ``on_ack`` is told. A replay once the recipient is final, an attempt not made yet, an unknown
  recipient are refused with a page saying so (``nodes/api/ack_checks.py``); nothing is stored.

Pages are small French HTML without scripts, never cached nor indexed, and send no referrer.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import quote

from aiohttp import web

from nodes.api.ack_checks import (
    Refused,
    check_ack_verdict,
    check_reference,
    check_signature,
    in_flight,
)
from nodes.api.callbacks import SIG, tell_ack
from nodes.api.context import context
from nodes.api.spec import API, JSON, Param, Resp, RouteSpec
from nodes.carriers.base import Ack
from nodes.logs import campaign_context

log = logging.getLogger("tenir.api.ack")

KIND = "link"

_PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p>{form}</body></html>
"""
_FORM = ('<form method="post" action="{action}">'
         '<button type="submit">Je confirme la réception / I acknowledge</button></form>')
_PAGE_HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; base-uri 'none'; "
                               "frame-ancestors 'none'",
}
_REFUSED_PAGES = {
    401: ("Lien invalide", "Ce lien d'accusé de réception n'est pas valide."),
    403: ("Lien invalide", "Ce lien d'accusé de réception n'est pas valide."),
    404: ("Lien inconnu", "Ce lien d'accusé de réception n'est pas valide ou a expiré."),
    409: ("Déjà traité", "Cette alerte n'attend plus d'accusé de réception (déjà enregistré, "
          "ou close). Vous pouvez fermer cette page."),
}


def _page(status: int, title: str, text: str, form: str = "") -> web.Response:
    return web.Response(
        text=_PAGE.format(title=html.escape(title), text=html.escape(text), form=form),
        status=status, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS,
    )


def _refused_page(e: Refused) -> web.Response:
    title, text = _REFUSED_PAGES[e.refusal.status]
    return _page(e.refusal.status, title, text)


async def ack_page(request: web.Request) -> web.Response:
    ctx = context(request)
    reference = request.match_info["reference"]
    try:
        check_reference(ctx, request, KIND, reference, "email")
        check_signature(ctx, request, KIND, "link", reference)
    except Refused as e:
        return _refused_page(e)
    action = f"{request.path}?sig={quote(request.query.get('sig', ''), safe='')}"
    form = _FORM.format(action=html.escape(action, quote=True))
    return _page(200, "Accusé de réception",
                 "Confirmez que vous avez reçu cette alerte en appuyant sur le bouton.", form)


async def acknowledge(request: web.Request) -> web.Response:
    ctx = context(request)
    reference = request.match_info["reference"]
    try:
        campaign_id = check_reference(ctx, request, KIND, reference, "email")
        check_signature(ctx, request, KIND, "link", reference)
        with campaign_context(campaign_id):
            verdict = await ctx.store.record_acknowledgement(
                reference, via="link", in_flight=in_flight(ctx, reference))
            check_ack_verdict(ctx, request, KIND, verdict)
            await tell_ack(ctx, Ack(reference=reference, via="link"))
            log.info("acknowledgement link %s: %s", reference, verdict)
    except Refused as e:
        return _refused_page(e)
    ctx.metrics.callbacks.inc(kind=KIND, result="acknowledged")
    return _page(200, "Merci", "Votre accusé de réception est enregistré. "
                 "Vous pouvez fermer cette page.")


_HTML: JSON = {"type": "string"}
_REF = Param("reference", "path", {"type": "string", "pattern": r"^\d+:\d+:email:\d+(\.\d+)?$"},
             "campaign:recipient:email:step.attempt", True)
_REFUSED = {403: Resp("the link's signature is missing or wrong", _HTML, "text/html"),
            404: Resp("unknown reference", _HTML, "text/html")}

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", f"{API}/ack/{{reference}}", ack_page, "public", "acknowledgementPage",
              "The page of an e-mail's acknowledgement link (records nothing)", "callbacks",
              {200: Resp("a page whose button POSTs the acknowledgement", _HTML, "text/html"),
               **_REFUSED},
              params=(_REF, SIG)),
    RouteSpec("POST", f"{API}/ack/{{reference}}", acknowledge, "public", "acknowledgeLink",
              "Acknowledge an e-mail (the page's button)", "callbacks",
              {200: Resp("thank-you page", _HTML, "text/html"), **_REFUSED,
               409: Resp("already final, or the attempt was not made", _HTML, "text/html")},
              params=(_REF, SIG)),
)
SCHEMAS: dict[str, JSON] = {}
