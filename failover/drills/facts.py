"""What a drill reads of the cluster, in one frozen value (``Facts``), and the Protocols of the
reader and of the campaign API the drill uses. ``real_cluster.py`` implements them on the real
servers (any inventory); ``tests/fakes/drill_cluster.py`` in memory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class CoordMember:
    name: str
    site: str
    healthy: bool
    leader: bool = False


@dataclass(frozen=True)
class PgMember:
    name: str
    site: str
    role: str  # leader | sync_standby | replica
    state: str  # running | streaming | ...
    lag_bytes: int | None = None


@dataclass(frozen=True)
class NodeMember:
    """A live alert node as the coordination service knows it, with the channels its carriers
    work on (each node republishes them when a circuit breaker opens or closes)."""

    name: str
    site: str
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class CampaignFact:
    id: int
    scenario: str
    state: str
    priority: int | None  # the scenario's: 1 (most urgent) .. 9; None if unknown


@dataclass(frozen=True)
class Facts:
    """One read of the cluster. A part that could not be read is None and ``errors`` says why."""

    coordination: tuple[CoordMember, ...] = ()
    postgres: tuple[PgMember, ...] | None = None
    haproxy: Mapping[str, tuple[str, ...]] | None = None  # HAProxy host -> servers it routes to
    nodes: tuple[NodeMember, ...] | None = None
    drained: tuple[str, ...] | None = None
    campaigns: tuple[CampaignFact, ...] | None = None
    errors: tuple[str, ...] = ()

    @property
    def primary(self) -> PgMember | None:
        return next((m for m in self.postgres or () if m.role == "leader"), None)

    @property
    def sync_standby(self) -> PgMember | None:
        return next((m for m in self.postgres or () if m.role == "sync_standby"), None)

    @property
    def leader(self) -> str | None:
        return next((m.name for m in self.coordination if m.leader and m.healthy), None)


@dataclass(frozen=True)
class Sites:
    """The inventory's sites: the two datacenter sites and the witness."""

    datacenters: tuple[str, str]
    witness: str
    postgres_of: Mapping[str, str] = field(default_factory=dict)  # site -> its PostgreSQL host

    def other(self, site: str) -> str:
        a, b = self.datacenters
        return b if site == a else a


class Refused(RuntimeError):
    """The nodes answered no (a 4xx): trying again will not help."""


class ClusterReader(Protocol):
    """Reads :class:`Facts`; never raises for a part that does not answer (it is None)."""

    def facts(self) -> Facts: ...


class DrillApi(Protocol):
    """The alert nodes' API as the drill uses it (any node that answers)."""

    def launch(self, scenario: str, *, population: int | None, group: str | None,
               batch_size: int) -> int: ...
    def campaign(self, campaign_id: int) -> dict[str, Any]: ...
    def events(self, limit: int = 50) -> list[dict[str, Any]]: ...
