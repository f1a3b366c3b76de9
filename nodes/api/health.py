"""Probes, metrics and the API's own description (all without a token).

* ``/healthz``: the process answers (liveness; never touches the store);
* ``/readyz``: the campaign store answers its cheapest query within READY_TIMEOUT_S
  (readiness: HAProxy or an orchestrator stops sending work to a node that cannot reach
  PostgreSQL). Its body also says whether the node is ``dispatching``: a member of the
  coordination service with its membership confirmed, not cut from the store (the API serves
  without it: launches and callbacks need only the store). Deployments wait for both, and so
  does the lab: a node back from a fault may answer before it sends again;
* ``/metrics``: Prometheus text exposition; each scrape also reads the store's cluster-wide
  fencing rejection count (``tenir_store_up`` says whether that worked);
* ``/api/v1/openapi.json``: the OpenAPI 3.1 document, generated from the route table.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from nodes.api.context import context
from nodes.api.errors import json_response
from nodes.api.spec import API, JSON, Resp, RouteSpec, ref
from nodes.metrics import CONTENT_TYPE

log = logging.getLogger("tenir.api.health")

READY_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    ctx = context(request)
    return json_response({"status": "alive", "node": ctx.node, "site": ctx.site})


async def readyz(request: web.Request) -> web.Response:
    ctx = context(request)
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            # The cheapest query of the contract: one row by primary key.
            await ctx.store.list_contacts(limit=1)
    except Exception as e:
        ctx.metrics.store_up.set(0)
        log.warning("not ready: campaign store unreachable (%s)", type(e).__name__)
        return json_response({"status": "unready", "node": ctx.node, "site": ctx.site,
                              "error": "campaign store unreachable"}, 503)
    ctx.metrics.store_up.set(1)
    dispatching = ctx.dispatch is None or ctx.dispatch.may_dispatch()
    return json_response({"status": "ready", "node": ctx.node, "site": ctx.site,
                          "dispatching": dispatching})


async def metrics(request: web.Request) -> web.Response:
    ctx = context(request)
    # The store's cluster-wide counters, and whether it answers, fresh at every scrape.
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            rejections = await ctx.store.fencing_rejections()
    except Exception as e:
        ctx.metrics.store_up.set(0)
        log.warning("metrics: campaign store unreachable (%s)", type(e).__name__)
    else:
        ctx.metrics.store_up.set(1)
        ctx.metrics.store_fencing_rejections.set(rejections)
    body = ctx.metrics.render().encode("utf-8")
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return json_response(context(request).openapi)


SCHEMAS: dict[str, JSON] = {
    "Health": {
        "type": "object", "required": ["status", "node", "site"],
        "properties": {"status": {"enum": ["alive", "ready", "unready"]},
                       "node": {"type": "string"}, "site": {"type": "string"},
                       "error": {"type": "string"},
                       "dispatching": {
                           "type": "boolean",
                           "description": "readyz: this node may send now (its coordination "
                                          "membership confirmed, not cut from the store)"}},
    },
}

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/healthz", healthz, "public", "healthz", "Liveness probe", "operations",
              {200: Resp("the process is alive", ref("Health"))}),
    RouteSpec("GET", "/readyz", readyz, "public", "readyz", "Readiness probe (store reachable)",
              "operations", {200: Resp("ready", ref("Health")),
                             503: Resp("the campaign store cannot be reached", ref("Health"))}),
    RouteSpec("GET", "/metrics", metrics, "public", "metrics", "Prometheus metrics",
              "operations", {200: Resp("text exposition format 0.0.4", {"type": "string"},
                                       "text/plain")}),
    RouteSpec("GET", f"{API}/openapi.json", openapi, "public", "openapi",
              "This document", "operations",
              {200: Resp("OpenAPI 3.1 document", {"type": "object"})}),
)
