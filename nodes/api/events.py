"""Events: what the watchdog and operators did, as recorded in the campaign store (evidence).

``POST /api/v1/events`` lets an operator's tool (``tenir switchover``, ``tenir site drain``)
record what it did without a database connection of its own: the node that answers stores it
under its own name and site, with the caller's role and token fingerprint in ``details.by``.
Only ``operator.*`` kinds can be recorded this way; the watchdog's own kinds cannot be forged.
"""

from __future__ import annotations

import re

from aiohttp import web

from nodes.api.bodies import Fields, check_query, query_int, read_json_object
from nodes.api.context import context, principal
from nodes.api.errors import invalid, json_response
from nodes.api.serialize import iso
from nodes.api.spec import API, JSON, Body, Param, Resp, RouteSpec, list_of, nullable, ref
from replication.store_api import Event

KIND = re.compile(r"operator\.[a-z][a-z0-9_.]{0,60}\Z")  # and the table's CHECK


def event_json(e: Event) -> JSON:
    return {"id": e.id, "at": iso(e.at), "kind": e.kind, "node": e.node, "site": e.site,
            "campaign_id": e.campaign_id, "sentence": e.sentence, "details": e.details}


async def record_event(request: web.Request) -> web.Response:
    f = Fields(await read_json_object(request), ("kind", "sentence", "details"))
    kind = f.req_str("kind", 70)
    if not KIND.match(f.data["kind"]):  # as sent: no white space around it either
        raise invalid("kind", "must be operator.<name> (lower case letters, digits, _ and .)")
    sentence = f.req_str("sentence", 4000)
    details = f.obj("details") if f.data.get("details") is not None else {}
    ctx = context(request)
    event_id = await ctx.store.record_event(
        kind, sentence, ctx.node, ctx.site, details={**details, "by": principal(request).id},
        actor=principal(request).id)
    return json_response({"id": event_id}, 201)


async def list_events(request: web.Request) -> web.Response:
    check_query(request, ("limit",))
    limit = query_int(request, "limit", 100, 1, 1000)
    events = await context(request).store.list_events(limit=limit)
    return json_response({"items": [event_json(e) for e in events]})


SCHEMAS: dict[str, JSON] = {
    "Event": {
        "type": "object",
        "required": ["id", "at", "kind", "node", "site", "campaign_id", "sentence", "details"],
        "properties": {
            "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
            "kind": {"type": "string", "description": "watchdog.move, operator.switchover, ..."},
            "node": {"type": "string", "description": "the node that recorded it"},
            "site": {"type": "string"}, "campaign_id": {"type": ["integer", "null"]},
            "sentence": {"type": "string", "description": "what was done, in one sentence"},
            "details": {"type": "object"},
        },
    },
    "EventIn": {
        "type": "object", "required": ["kind", "sentence"], "additionalProperties": False,
        "properties": {
            "kind": {"type": "string", "pattern": "^operator\\.[a-z][a-z0-9_.]{0,60}$"},
            "sentence": {"type": "string", "maxLength": 4000, "pattern": "\\S"},
            "details": nullable({"type": "object",
                                 "description": "free JSON; 'by' is set by the node"}),
        },
    },
    "EventCreated": {"type": "object", "required": ["id"],
                     "properties": {"id": {"type": "integer"}}},
}

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", f"{API}/events", record_event, "control", "recordEvent",
              "Record what an operator did (kind operator.*)", "operations",
              {201: Resp("recorded", ref("EventCreated"))},
              body=Body("application/json", ref("EventIn"))),
    RouteSpec("GET", f"{API}/events", list_events, "read", "listEvents",
              "Latest events (watchdog moves, operator actions), newest first", "operations",
              {200: Resp("latest events", list_of("Event"))},
              params=(Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000,
                                               "default": 100}, "how many"),)),
)
