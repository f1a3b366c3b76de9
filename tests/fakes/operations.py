"""Fakes of the planned operations' collaborators (``failover/drain.py``,
``failover/switchover.py``): the coordination drains, the nodes' cluster view, Patroni, the
HAProxies and the event sink, all writing to one :class:`World` that logs, in order, what each
was asked to do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from failover.drain import ClusterSnapshot, DrainRefused
from failover.switchover import PROXY
from replication.haproxy import ServerState
from replication.patroni import PatroniCluster, PatroniMember

PG = {"paris": "paris-db", "marseille": "marseille-db"}
NODES = {"paris-node1": "paris", "paris-node2": "paris", "marseille-node1": "marseille"}


class World:
    """One shared log of what every fake was asked to do, in order."""

    def __init__(self, primary: str = "paris-db", sync: str | None = "marseille-db") -> None:
        self.log: list[str] = []
        self.primary = primary
        self.sync = sync
        self.drained: set[str] = set()
        self.in_flight: list[dict[int, dict[str, int]]] = [
            {4: {"paris-node1": 2, "marseille-node1": 1}},
            {4: {"paris-node1": 1, "marseille-node1": 2}},
            {4: {"marseille-node1": 3}},
        ]
        self.switch_fails: Exception | None = None
        self.switch_takes_effect = True
        self.events: list[tuple[str, str, Mapping[str, Any]]] = []
        self.said: list[str] = []

    # DrainControl
    def drain(self, site: str) -> bool:
        self.log.append(f"drain {site}")
        if self.drained - {site}:
            raise DrainRefused(f"site {next(iter(self.drained))} is already drained")
        new = site not in self.drained
        self.drained.add(site)
        return new

    def undrain(self, site: str) -> bool:
        self.log.append(f"undrain {site}")
        was = site in self.drained
        self.drained.discard(site)
        return was

    def drained_list(self) -> list[str]:
        return sorted(self.drained)

    # ClusterProbe
    def snapshot(self) -> ClusterSnapshot:
        view = self.in_flight.pop(0) if len(self.in_flight) > 1 else self.in_flight[0]
        return ClusterSnapshot(view, {})

    # EventSink
    def record(self, kind: str, sentence: str, details: Mapping[str, Any]) -> str | None:
        self.log.append(f"event {kind}")
        self.events.append((kind, sentence, details))
        return None


class Drains:
    """:class:`failover.drain.DrainControl` on the world (and ``by``, as CoordinationDrains)."""

    by = "tester@test-host"

    def __init__(self, world: World) -> None:
        self.w = world

    def drain(self, site: str) -> bool:
        return self.w.drain(site)

    def undrain(self, site: str) -> bool:
        return self.w.undrain(site)

    def drained(self) -> list[str]:
        return self.w.drained_list()


class FakePatroni:
    def __init__(self, world: World) -> None:
        self.w = world

    def cluster(self) -> PatroniCluster:
        members = [PatroniMember(name, "leader" if name == self.w.primary else
                                 "sync_standby" if name == self.w.sync else "replica",
                                 "streaming" if name != self.w.primary else "running",
                                 name, 3, 0) for name in PG.values()]
        return PatroniCluster(tuple(members))

    def switchover(self, leader: str, candidate: str) -> str:
        self.w.log.append(f"patroni switchover {leader} -> {candidate}")
        if self.w.switch_fails is not None:
            raise self.w.switch_fails
        if self.w.switch_takes_effect:
            self.w.primary, self.w.sync = candidate, leader
        return f'Successfully switched over to "{candidate}"'


class FakeHAProxy:
    def __init__(self, world: World, name: str) -> None:
        self.w = world
        self.name = name

    def servers(self, proxy: str | None = None) -> list[ServerState]:
        # what the statistics page shows: the health check routes to the primary only
        return [ServerState(PROXY, server, "UP" if server == self.w.primary else "DOWN", 0)
                for server in PG.values()]
