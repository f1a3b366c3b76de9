"""What every handler reaches through ``request.app[CONTEXT]`` and ``request[PRINCIPAL]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from cluster.coordination.base import MemberInfo
from failover.drills.service import DrillService
from failover.evidence.service import EvidenceService
from nodes.api.limits import HttpLimits
from nodes.carriers.base import AckSink, ReceiptSink
from nodes.carriers.callback_auth import CallbackVerifier
from nodes.launches import LaunchWriter
from nodes.metrics import Metrics
from nodes.signing import AckSigner
from nodes.users import Role
from replication.store_api import CampaignStore


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user's role and name (never the token)."""

    role: Role
    user: str

    @property
    def id(self) -> str:
        """What records the action: the user's name."""
        return self.user


class InFlight(Protocol):
    """Whether this node's dispatcher is waiting on a reference's receipt or acknowledgement
    (``Dispatcher.awaiting``): only then is a callback for an attempt not yet recorded kept."""

    def awaiting(self, reference: str) -> bool: ...


class DispatchState(Protocol):
    """Whether this node's dispatcher may send now (``nodes.delivery.DispatchGate``: its
    membership confirmed, not cut from the store). ``/readyz`` reports it."""

    def may_dispatch(self) -> bool: ...


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
    limits: HttpLimits
    openapi: dict[str, Any]
    signer: AckSigner
    carrier_auth: CallbackVerifier
    in_flight: InFlight | None = None
    cluster: ClusterView | None = None
    evidence: EvidenceService | None = None
    launches: LaunchWriter | None = None
    drills: DrillService | None = None
    dispatch: DispatchState | None = None


CONTEXT = web.AppKey("tenir.api", ApiContext)
PRINCIPAL = web.RequestKey("tenir.principal", Principal)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
