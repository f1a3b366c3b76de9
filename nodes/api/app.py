"""The alert node's REST API as an aiohttp application.

Middlewares, outermost first: access log and metrics; errors as JSON; per-address rate limits;
bearer-token authentication and role check; the route's body limit. Routes come from the
``ROUTES`` tables of the resource modules, which also feed the OpenAPI document.

Serve it with ``nodes.api.server.serve`` (timeouts, connection caps; the access log is ours,
and never carries the Authorization header).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from failover.drills.service import DrillService
from failover.evidence.service import EvidenceService
from nodes.api import (
    ack_links,
    callbacks,
    campaigns,
    cluster,
    contacts,
    drills,
    events,
    evidence,
    health,
    openapi,
    scenarios,
)
from nodes.api.auth import UserTable, auth_middleware
from nodes.api.bodies import BodyLimit, body_limit_middleware
from nodes.api.context import CONTEXT, ApiContext, ClusterView, DispatchState, InFlight
from nodes.api.errors import error_middleware
from nodes.api.identity import TABLE
from nodes.api.limits import HttpLimits
from nodes.api.observability import observe_middleware
from nodes.api.ratelimit import rate_limit_middleware
from nodes.api.spec import JSON, Access, RouteSpec
from nodes.carriers.base import AckSink, ReceiptSink
from nodes.carriers.callback_auth import CallbackVerifier
from nodes.launches import LaunchWriter
from nodes.metrics import Metrics
from nodes.signing import AckSigner
from nodes.users import ApiUser
from replication.store_api import CampaignStore

MODULES = (health, contacts, scenarios, campaigns, callbacks, ack_links, cluster, events,
           evidence, drills)
ROUTES: tuple[RouteSpec, ...] = tuple(r for m in MODULES for r in m.ROUTES)


def _schemas() -> dict[str, JSON]:
    merged: dict[str, JSON] = {}
    for module in MODULES:
        for name, schema in module.SCHEMAS.items():
            if name in merged:
                raise RuntimeError(f"schema {name} is declared twice")
            merged[name] = schema
    return merged


def body_limit(spec: RouteSpec, limits: HttpLimits) -> BodyLimit:
    """A route's body size and time: a few KiB and seconds when public, the import size for a
    route that says it takes large bodies, the JSON size otherwise."""
    if spec.access == "public":
        return BodyLimit(limits.public_body_bytes, limits.public_body_timeout_s)
    if spec.large_body:
        return BodyLimit(limits.import_body_bytes, limits.body_timeout_s)
    return BodyLimit(limits.json_body_bytes, limits.body_timeout_s)


def create_app(
    store: CampaignStore,
    *,
    node: str,
    site: str,
    users: Sequence[ApiUser],
    metrics: Metrics,
    signer: AckSigner,
    carrier_auth: CallbackVerifier,
    in_flight: InFlight | None = None,
    on_ack: AckSink | None = None,
    on_receipt: ReceiptSink | None = None,
    limits: HttpLimits | None = None,
    cluster_view: ClusterView | None = None,
    evidence_service: EvidenceService | None = None,
    launches: LaunchWriter | None = None,
    drill_service: DrillService | None = None,
    dispatch: DispatchState | None = None,
) -> web.Application:
    """The API of node ``node`` of site ``site``, serving ``store``.

    ``users`` are the API's users, each with a role and the digest of their bearer token.
    ``signer`` checks the signatures of acknowledgement links and voice callback URLs,
    ``carrier_auth`` the voice carrier's own; ``in_flight`` says which references this node's
    dispatcher waits on. ``on_receipt``/``on_ack`` are told about the receipts and
    acknowledgements that arrive through callbacks, after the store has recorded them.
    ``cluster_view`` is the coordination-backed part of ``GET /api/v1/cluster`` (members,
    watchdog leader, drained sites); without it that route says the coordination service is
    not configured. ``limits``: body sizes and times, rate limits (``HttpLimits()`` when not
    given). ``evidence_service`` serves ``/evidence`` (the ledger, proofs, bundles, reports,
    records). ``launches`` writes the launches past their first chunk (a node passes the one it
    closes at shutdown; by default one of this app's own). ``drill_service`` serves ``/drills``
    (approvals, runs, records, findings, abort, schedule). ``dispatch`` says whether the
    dispatcher may send (its membership confirmed, not cut from the store): ``/readyz``
    reports it as ``dispatching`` (always true without it: nothing gates the dispatcher).
    """
    limits = limits or HttpLimits()
    table = UserTable(users)
    access_of: dict[tuple[str, str], Access] = {}
    body_of: dict[tuple[str, str], BodyLimit] = {}
    app = web.Application(
        client_max_size=limits.largest_body,
        middlewares=[
            observe_middleware(metrics),
            error_middleware,
            rate_limit_middleware(limits, access_of, metrics),
            auth_middleware(table, access_of, metrics),
            body_limit_middleware(body_of, BodyLimit(limits.public_body_bytes,
                                                     limits.public_body_timeout_s)),
        ],
    )
    described: list[tuple[str, RouteSpec]] = []
    for spec in ROUTES:
        route = app.router.add_route(spec.method, spec.path, spec.handler, name=spec.operation_id)
        canonical = route.resource.canonical if route.resource is not None else spec.path
        if (spec.method, canonical) in access_of:
            raise RuntimeError(f"route {spec.method} {canonical} is declared twice")
        access_of[(spec.method, canonical)] = spec.access
        body_of[(spec.method, canonical)] = body_limit(spec, limits)
        described.append((canonical, spec))
    document: dict[str, Any] = openapi.build(described, _schemas(), node=node)
    app[TABLE] = table
    app[CONTEXT] = ApiContext(
        store=store, node=node, site=site, metrics=metrics, on_ack=on_ack,
        on_receipt=on_receipt, limits=limits, openapi=document, signer=signer,
        carrier_auth=carrier_auth, in_flight=in_flight, cluster=cluster_view,
        evidence=evidence_service, launches=launches or LaunchWriter(store, node),
        drills=drill_service, dispatch=dispatch,
    )
    return app
