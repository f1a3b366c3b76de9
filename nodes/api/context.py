"""What every handler reaches through ``request.app[CONTEXT]`` and ``request[PRINCIPAL]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from cluster.coordination.base import MemberInfo
from failover.drills.service import DrillService
from failover.evidence.service import EvidenceService
from nodes.api.spec import Role
from nodes.carriers.base import AckSink, ReceiptSink
from nodes.metrics import Metrics
from replication.store_api import CampaignStore


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role and a short fingerprint of the token (never the token)."""

    role: Role
    fingerprint: str

    @property
    def id(self) -> str:
        return f"{self.role}:{self.fingerprint}"


class ClusterView(Protocol):
    """What ``GET /api/v1/cluster`` reads from the coordination service (the node wires the
    implementation: ``nodes.drain.CoordinationClusterView``). Each call returns within the
    coordinator's retry timeout or raises ``CoordinationError``."""

    async def members(self) -> list[MemberInfo]: ...
    async def watchdog_leader(self) -> str | None: ...
    async def drained_sites(self) -> list[str]: ...


@dataclass(frozen=True)
class ApiContext:
    store: CampaignStore
    node: str
    site: str
    metrics: Metrics
    on_ack: AckSink | None
    on_receipt: ReceiptSink | None
    max_body_bytes: int
    openapi: dict[str, Any]
    cluster: ClusterView | None = None
    evidence: EvidenceService | None = None
    drills: DrillService | None = None


CONTEXT = web.AppKey("tenir.api", ApiContext)
PRINCIPAL = web.RequestKey("tenir.principal", Principal)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
