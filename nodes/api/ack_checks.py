"""What the voice callback and the acknowledgement link check before anything is stored, and how
each refusal is answered and counted.

Order: the reference's shape (``campaign:recipient:channel:step.attempt`` of the route's channel),
then the URL's signature (``nodes/signing.py``), then the store's verdict, given whether this
node's dispatcher waits on the reference. A refusal stores nothing, is counted in
``tenir_callbacks_refused_total{kind, reason}``, and, when it looks like guessing (no or a wrong
signature, a malformed reference), charges the caller's failure rate limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aiohttp import web

from nodes.api.context import ApiContext
from nodes.api.ratelimit import note_failure
from nodes.signing import Purpose, parse_reference
from replication.store_api import AckVerdict


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str
    guess: bool  # counts against the caller's failure rate limit


REFUSALS: Final[dict[str, Refusal]] = {
    "carrier_unsigned": Refusal(401, "the carrier's signature is missing", True),
    "carrier_bad_signature": Refusal(401, "the carrier's signature is wrong", True),
    "stale": Refusal(401, "the carrier's signature is too old or from the future", True),
    "replayed": Refusal(409, "this callback was already received", False),
    "unsigned": Refusal(403, "the link is not signed", True),
    "bad_signature": Refusal(403, "the link's signature is wrong", True),
    "unknown_key": Refusal(403, "the link was signed with a key this node does not know", True),
    "malformed": Refusal(404, "unknown reference", True),
    "unknown": Refusal(404, "unknown reference", False),
    "early": Refusal(409, "this attempt was not made yet", False),
    "final": Refusal(409, "this recipient already has a final outcome", False),
}


class Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refusal = REFUSALS[reason]


def refused(ctx: ApiContext, request: web.Request, kind: str, reason: str) -> Refused:
    """Count the refusal (and charge the rate limit for a guess); the caller raises it."""
    ctx.metrics.callbacks_refused.inc(kind=kind, reason=reason)
    refusal = REFUSALS[reason]
    if refusal.guess:
        note_failure(request, reason)
    return Refused(reason)


def check_reference(ctx: ApiContext, request: web.Request, kind: str, reference: str,
                    channel: str) -> int:
    """The campaign id of a well-formed reference of ``channel``."""
    parsed = parse_reference(reference)
    if parsed is None or parsed[2] != channel:
        raise refused(ctx, request, kind, "malformed")
    return parsed[0]


def check_signature(ctx: ApiContext, request: web.Request, kind: str, purpose: Purpose,
                    reference: str) -> None:
    verdict = ctx.signer.verify(purpose, reference, request.query.get("sig"))
    if verdict != "ok":
        raise refused(ctx, request, kind, verdict)


def in_flight(ctx: ApiContext, reference: str) -> bool:
    return ctx.in_flight is not None and ctx.in_flight.awaiting(reference)


def check_ack_verdict(ctx: ApiContext, request: web.Request, kind: str,
                      verdict: AckVerdict) -> None:
    if verdict not in ("recorded", "kept"):
        raise refused(ctx, request, kind, verdict)
