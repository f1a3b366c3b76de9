"""Access log and HTTP metrics, as the outermost middleware (it sees every final status).

One ``tenir.api.access`` record per request with method, path, route, status, duration,
caller (role and token fingerprint) and campaign id; never a header, a query string or a body.
Probes and scrapes log at DEBUG. The route label is the route's template
(``/api/v1/campaigns/{id}``), or ``unmatched``, so the label set stays small.

Run the application with aiohttp's own access log off (``AppRunner(app, access_log=None)``).
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Middleware

from nodes.api.context import PRINCIPAL
from nodes.api.spec import Handler
from nodes.metrics import Metrics

access_log = logging.getLogger("tenir.api.access")

_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})


def route_label(request: web.Request) -> str:
    match = request.match_info
    if match.http_exception is not None:
        return "unmatched"
    resource = match.route.resource
    return resource.canonical if resource is not None else "unmatched"


def observe_middleware(metrics: Metrics) -> Middleware:
    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        metrics.http_in_flight.inc()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
                response.headers["Cache-Control"] = "no-store"
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            elapsed = time.perf_counter() - started
            metrics.http_in_flight.dec()
            route = route_label(request)
            metrics.http_requests.inc(method=request.method, route=route, status=str(status))
            metrics.http_request_seconds.inc(elapsed, method=request.method, route=route)
            who = request.get(PRINCIPAL)
            campaign_id = (request.match_info.get("id")
                           if route.startswith("/api/v1/campaigns/") else None)
            access_log.log(
                logging.DEBUG if route in _QUIET else logging.INFO,
                "%s %s %d %.1fms", request.method, request.path, status, elapsed * 1000,
                extra={
                    "method": request.method, "path": request.path, "route": route,
                    "status": status, "duration_ms": round(elapsed * 1000, 1),
                    "caller": who.id if who is not None else None,
                    "remote": request.remote,
                    **({"campaign": int(campaign_id)} if campaign_id else {}),
                },
            )

    return observe
