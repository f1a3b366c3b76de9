"""The cluster as one node sees it, for operators (``tenir status``, ``tenir site drain --wait``,
``tenir switchover``): members of the coordination service, the watchdog leader, the drained
sites, and which node holds how many batches of which campaign.

Each part is read on its own, within a bound: a part that cannot be read is ``null`` and
``errors`` says why, so that a node cut from the coordination service, or whose PostgreSQL is
failing over, still answers with what it knows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import web

from nodes.api.bodies import check_query
from nodes.api.context import context
from nodes.api.errors import json_response
from nodes.api.spec import API, JSON, Resp, RouteSpec, ref

log = logging.getLogger("tenir.api.cluster")

PART_TIMEOUT_S = 3.0  # each part: the coordinator answers within its retry timeout anyway

T = TypeVar("T")


async def _part(what: str, call: Awaitable[T]) -> tuple[T | None, str | None]:
    """(value, None), or (None, why it could not be read) within PART_TIMEOUT_S."""
    try:
        async with asyncio.timeout(PART_TIMEOUT_S):
            return await call, None
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        error = f"{what}: no answer within {PART_TIMEOUT_S:g} s"
    except Exception as exc:
        error = f"{what}: {type(exc).__name__}: {exc}"
    log.warning("cluster view: %s", error)
    return None, error


async def _nothing() -> None:
    return None


async def get_cluster(request: web.Request) -> web.Response:
    check_query(request, ())
    ctx = context(request)
    view = ctx.cluster
    # The parts are read at once (gather owns and awaits its tasks): the answer takes as long
    # as the slowest part, never their sum.
    members, leader, drained, in_flight = await asyncio.gather(
        _part("coordination service (members)", view.members() if view else _nothing()),
        _part("coordination service (watchdog leader)",
              view.watchdog_leader() if view else _nothing()),
        _part("coordination service (drained sites)",
              view.drained_sites() if view else _nothing()),
        _part("campaign store", ctx.store.batches_in_flight_by_campaign()),
    )
    errors = ([] if view else ["coordination service: not configured on this node"]) + [
        e for _, e in (members, leader, drained, in_flight) if e is not None]
    body: dict[str, Any] = {
        "node": ctx.node, "site": ctx.site,
        "members": None if members[0] is None else [
            {"name": m.name, "site": m.site, "url": m.url, "carriers": list(m.carriers)}
            for m in sorted(members[0], key=lambda m: m.name)],
        "watchdog_leader": leader[0],
        "drained_sites": drained[0],
        "in_flight": None if in_flight[0] is None else {
            str(campaign): dict(sorted(nodes.items()))
            for campaign, nodes in sorted(in_flight[0].items())},
        "errors": errors,
    }
    return json_response(body)


_NULLABLE_STRINGS: JSON = {"type": ["array", "null"], "items": {"type": "string"}}

SCHEMAS: dict[str, JSON] = {
    "ClusterMember": {
        "type": "object", "required": ["name", "site", "url", "carriers"],
        "properties": {"name": {"type": "string"}, "site": {"type": "string"},
                       "url": {"type": "string", "description": "the member's API"},
                       "carriers": {"type": "array", "items": {"type": "string"},
                                    "description": "channels whose carrier works at this "
                                                   "member (a circuit breaker open: absent)"}},
    },
    "ClusterView": {
        "type": "object",
        "required": ["node", "site", "members", "watchdog_leader", "drained_sites", "in_flight",
                     "errors"],
        "properties": {
            "node": {"type": "string", "description": "the node that answered"},
            "site": {"type": "string"},
            "members": {"type": ["array", "null"], "items": ref("ClusterMember"),
                        "description": "live members of the coordination service; null if it "
                                       "could not be read"},
            "watchdog_leader": {"type": ["string", "null"]},
            "drained_sites": {**_NULLABLE_STRINGS,
                              "description": "sites whose nodes take no new batches"},
            "in_flight": {
                "type": ["object", "null"],
                "description": "campaign id -> node -> batches it holds (claimed)",
                "additionalProperties": {"type": "object",
                                         "additionalProperties": {"type": "integer"}},
            },
            "errors": {"type": "array", "items": {"type": "string"},
                       "description": "why a part is null"},
        },
    },
}

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", f"{API}/cluster", get_cluster, "read", "getCluster",
              "Members, watchdog leader, drained sites and batches in flight", "operations",
              {200: Resp("what this node sees of the cluster", ref("ClusterView"))}),
)
