"""The alert node's REST API as an aiohttp application.

Middlewares, outermost first: access log and metrics; errors as JSON; bearer-token
authentication and role check; body size limit. Routes come from the ``ROUTES`` tables of
the resource modules, which also feed the OpenAPI document.

Serve it on the node with ``web.AppRunner(app, access_log=None)`` (the access log is ours, and
never carries the Authorization header).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from failover.drills.service import DrillService
from failover.evidence.service import EvidenceService
from nodes.api import (
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
from nodes.api.auth import TokenTable, auth_middleware
from nodes.api.bodies import body_size_middleware
from nodes.api.context import CONTEXT, ApiContext, ClusterView
from nodes.api.errors import error_middleware
from nodes.api.identity import TABLE
from nodes.api.observability import observe_middleware
from nodes.api.spec import JSON, Access, Role, RouteSpec
from nodes.carriers.base import AckSink, ReceiptSink
from nodes.metrics import Metrics
from replication.store_api import CampaignStore

MiB = 1024 * 1024

MODULES = (health, contacts, scenarios, campaigns, callbacks, cluster, events, evidence, drills)
ROUTES: tuple[RouteSpec, ...] = tuple(r for m in MODULES for r in m.ROUTES)


def _schemas() -> dict[str, JSON]:
    merged: dict[str, JSON] = {}
    for module in MODULES:
        for name, schema in module.SCHEMAS.items():
            if name in merged:
                raise RuntimeError(f"schema {name} is declared twice")
            merged[name] = schema
    return merged


def create_app(
    store: CampaignStore,
    *,
    node: str,
    site: str,
    tokens: Mapping[str, Role],
    metrics: Metrics,
    on_ack: AckSink | None = None,
    on_receipt: ReceiptSink | None = None,
    max_body_bytes: int = 20 * MiB,
    cluster_view: ClusterView | None = None,
    evidence_service: EvidenceService | None = None,
    drill_service: DrillService | None = None,
) -> web.Application:
    """The API of node ``node`` of site ``site``, serving ``store``.

    ``tokens`` maps each bearer token to its role (tokens shorter than 16 characters are
    refused). ``on_receipt``/``on_ack`` are told about the receipts and acknowledgements that
    arrive through callbacks, after the store has recorded them. ``cluster_view`` is the
    coordination-backed part of ``GET /api/v1/cluster`` (members, watchdog leader, drained
    sites); without it that route says the coordination service is not configured.
    ``evidence_service`` serves ``/evidence`` (the ledger, proofs, bundles, reports, records);
    ``drill_service`` serves ``/drills`` (approvals, runs, records, findings, abort, schedule).
    """
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be positive")
    table = TokenTable(tokens)
    access_of: dict[tuple[str, str], Access] = {}
    app = web.Application(
        client_max_size=max_body_bytes,
        middlewares=[
            observe_middleware(metrics),
            error_middleware,
            auth_middleware(table, access_of, metrics),
            body_size_middleware(max_body_bytes),
        ],
    )
    described: list[tuple[str, RouteSpec]] = []
    for spec in ROUTES:
        route = app.router.add_route(spec.method, spec.path, spec.handler, name=spec.operation_id)
        canonical = route.resource.canonical if route.resource is not None else spec.path
        if (spec.method, canonical) in access_of:
            raise RuntimeError(f"route {spec.method} {canonical} is declared twice")
        access_of[(spec.method, canonical)] = spec.access
        described.append((canonical, spec))
    document: dict[str, Any] = openapi.build(described, _schemas(), node=node)
    app[TABLE] = table
    app[CONTEXT] = ApiContext(
        store=store, node=node, site=site, metrics=metrics, on_ack=on_ack,
        on_receipt=on_receipt, max_body_bytes=max_body_bytes, openapi=document,
        cluster=cluster_view, evidence=evidence_service, drills=drill_service,
    )
    return app
