"""``tenir site drain|undrain SITE``: planned maintenance of one datacenter site.

Draining sets the coordination key ``drain/<site>`` (compare-and-set: created only if absent);
every alert node watches these keys and, while its own site is drained, claims no new batch
(``nodes/drain.py``). What the site's nodes hold is finished, so the site's work moves to the
other site batch by batch. Undraining deletes the key.

Both datacenter sites are never drained at once: alerts must keep flowing. The refusal is checked
before the write and again after it (another operator may have drained the other site in
between); if both writes landed, each backs its own out, so the race ends with neither drained
rather than both.

``--wait`` then follows the nodes' cluster view (``GET /api/v1/cluster``) until no node of the
site holds a batch, bounded by ``--timeout``, and says what moved.

Collaborators are small Protocols (:class:`DrainControl`, :class:`ClusterProbe`) so that the
switchover (``failover/switchover.py``) and the unit tests can pass their own.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from cluster.coordination.base import CoordinationSettings, CoordinationUnavailable, Coordinator
from cluster.settings import coordination_endpoints
from cluster.topology import Topology
from cluster.wait import wait_for
from nodes.drain import drain_key

T = TypeVar("T")
InFlight = dict[int, dict[str, int]]  # campaign id -> node -> batches held


class OperationError(RuntimeError):
    """A planned operation refused or failed; the message says why and what state it left."""


class DrainRefused(OperationError):
    pass


def operator_name() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container): the host says enough
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# --- the coordination side -----------------------------------------------------------------

async def drained_sites(coordinator: Coordinator, sites: Sequence[str]) -> list[str]:
    return [s for s in sites if await coordinator.get(drain_key(s)) is not None]


async def set_drain(coordinator: Coordinator, site: str, sites: Sequence[str],
                    by: str = "") -> bool:
    """Drain ``site`` (one of the datacenter ``sites``). Returns True if this call drained it,
    False if it already was. Raises :class:`DrainRefused` if another site is drained."""
    if site not in sites:
        raise DrainRefused(f"{site!r} is not a datacenter site (sites: {', '.join(sites)})")
    others = [s for s in sites if s != site]

    def refusal(other: str, when: str) -> DrainRefused:
        return DrainRefused(
            f"site {other} is {when} drained: draining {site} too would leave no site taking "
            f"new batches, and alerts must keep flowing; undrain {other} first "
            f"(tenir site undrain {other})")

    already = await drained_sites(coordinator, others)
    if already:
        raise refusal(already[0], "already")
    value = json.dumps({"site": site, "by": by,
                        "at": datetime.now(UTC).isoformat(timespec="seconds")}).encode()
    try:
        wrote = await coordinator.compare_and_set(drain_key(site), value, None)
    except CoordinationUnavailable as exc:
        raise OperationError(f"coordination service unavailable: the drain of {site} may or may "
                             f"not be set ({exc}); run the command again") from exc
    if not wrote:
        return False
    late = await drained_sites(coordinator, others)
    if late:
        await coordinator.delete(drain_key(site))
        raise refusal(late[0], "now")
    return True


async def clear_drain(coordinator: Coordinator, site: str) -> bool:
    """Undrain ``site``; returns whether it was drained."""
    was = await coordinator.get(drain_key(site)) is not None
    await coordinator.delete(drain_key(site))
    return was


class DrainControl(Protocol):
    def drain(self, site: str) -> bool: ...  # True if newly drained; DrainRefused
    def undrain(self, site: str) -> bool: ...  # True if it was drained
    def drained(self) -> list[str]: ...


def coordination_settings(topo: Topology) -> CoordinationSettings:
    """How the CLI reaches the coordination service the inventory describes (the same
    endpoints and namespace as the alert nodes)."""
    from cluster import tls

    t = topo.node_timings
    return CoordinationSettings(
        endpoints=tuple(coordination_endpoints(topo)),
        namespace=f"/tenir/{topo.name}/", ttl=t.membership_ttl, retry_timeout=t.retry_timeout,
        tls=tls.current(), zk_digest=zk_digest(topo) if topo.coordination == "zookeeper" else None)


def zk_digest(topo: Topology) -> str | None:
    """The alert nodes' ZooKeeper digest user, ``user:password``: ``$TENIR_ZK_DIGEST``, else
    the inventory's ``tenir_node_zookeeper_user`` with the lab's secret (the operator acts on
    the nodes' znodes: drain flags)."""
    import os

    from cluster.credentials import secret
    from cluster.settings import setting

    given = os.environ.get("TENIR_ZK_DIGEST")
    if given:
        return given
    password = secret("TENIR_ZK_PASSWORD", "zookeeper_nodes")
    if not password:
        return None
    return f"{setting(topo, None, 'tenir_node', 'tenir_node_zookeeper_user')}:{password}"


class CoordinationDrains:
    """:class:`DrainControl` on the real coordination service: each call connects, acts and
    closes (no membership, no background task survives the call)."""

    def __init__(self, topo: Topology, by: str | None = None) -> None:
        self.backend = topo.coordination
        self.settings = coordination_settings(topo)
        self.sites = [s.name for s in topo.datacenter_sites]
        self.by = by or operator_name()

    def _run(self, fn: Callable[[Coordinator], Awaitable[T]]) -> T:
        from cluster.coordination.factory import open_coordinator

        async def go() -> T:
            coordinator = await open_coordinator(self.backend, self.settings)  # type: ignore[arg-type]
            try:
                return await fn(coordinator)
            finally:
                await coordinator.close()

        return asyncio.run(go())

    def _check(self, site: str) -> None:
        if site not in self.sites:
            raise DrainRefused(f"{site!r} is not a datacenter site (sites: "
                               f"{', '.join(self.sites)})")

    def drain(self, site: str) -> bool:
        self._check(site)
        return self._run(lambda c: set_drain(c, site, self.sites, self.by))

    def undrain(self, site: str) -> bool:
        self._check(site)
        return self._run(lambda c: clear_drain(c, site))

    def drained(self) -> list[str]:
        return self._run(lambda c: drained_sites(c, self.sites))


# --- the nodes' side: who holds what --------------------------------------------------------

@dataclass(frozen=True)
class ClusterSnapshot:
    in_flight: InFlight
    sites: Mapping[str, str] = field(default_factory=dict)  # member node -> site


class ClusterProbe(Protocol):
    def snapshot(self) -> ClusterSnapshot: ...  # raises if the batches in flight are unknown


class NodesClusterProbe:
    """:class:`ClusterProbe` on the alert nodes' ``GET /api/v1/cluster`` (any node)."""

    def __init__(self, topo: Topology, token: str) -> None:
        self.topo = topo
        self.token = token

    def snapshot(self) -> ClusterSnapshot:
        from cluster.status import fetch_cluster_view

        view = fetch_cluster_view(self.topo, self.token)
        if view.get("in_flight") is None:
            raise OperationError(f"{view.get('node')}: batches in flight unknown: "
                                 f"{'; '.join(view.get('errors') or [])}")
        return ClusterSnapshot(
            in_flight={int(c): {str(n): int(k) for n, k in by.items()}
                       for c, by in view["in_flight"].items()},
            sites={str(m["name"]): str(m["site"]) for m in view.get("members") or []})


def held_by(in_flight: InFlight, nodes: set[str]) -> InFlight:
    """The part of ``in_flight`` held by ``nodes``, without empty entries."""
    out: InFlight = {}
    for campaign, by_node in in_flight.items():
        mine = {n: k for n, k in by_node.items() if n in nodes and k > 0}
        if mine:
            out[campaign] = mine
    return out


def total(in_flight: InFlight) -> int:
    return sum(k for by in in_flight.values() for k in by.values())


def describe(in_flight: InFlight) -> str:
    if not in_flight:
        return "nothing"
    return ", ".join(f"campaign {c}: " + " ".join(f"{n} {k}" for n, k in sorted(by.items()))
                     for c, by in sorted(in_flight.items()))


@dataclass(frozen=True)
class IdleReport:
    site: str
    held_at_start: InFlight  # what the site's nodes held when the wait began
    elsewhere_at_end: InFlight  # what the other sites' nodes held when it ended
    seconds: float

    def sentence(self) -> str:
        if not self.held_at_start:
            moved = f"site {self.site} held no batch"
        else:
            campaigns = ", ".join(str(c) for c in sorted(self.held_at_start))
            moved = (f"site {self.site} finished the {total(self.held_at_start)} batches it held "
                     f"(campaign{'s' if len(self.held_at_start) > 1 else ''} {campaigns}) in "
                     f"{self.seconds:.1f} s")
        now = (f"the other site holds {total(self.elsewhere_at_end)} batches "
               f"({describe(self.elsewhere_at_end)})" if self.elsewhere_at_end
               else "no batch is in flight elsewhere")
        return f"{moved} and takes no new one; {now}"

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "seconds": round(self.seconds, 2),
                "held_at_start": {str(c): by for c, by in self.held_at_start.items()},
                "elsewhere_at_end": {str(c): by for c, by in self.elsewhere_at_end.items()},
                "sentence": self.sentence()}


def wait_site_idle(site: str, topo_nodes: Mapping[str, str], probe: ClusterProbe,
                   timeout: float, *, settle_s: float = 1.0, interval: float = 0.25,
                   clock: Callable[[], float] = time.monotonic) -> IdleReport:
    """Wait until no node of ``site`` holds a batch. ``topo_nodes`` maps the inventory's alert
    nodes to their sites (members the inventory does not name count by their own site). Idle
    must be seen twice in a row, and not before ``settle_s`` (a node learns of the drain through
    its watch: a claim may still be under way when the flag is set)."""
    began = clock()
    start: list[InFlight] = []
    quiet = [0]

    def probe_once() -> tuple[bool, IdleReport, str]:
        snap = probe.snapshot()
        sites = {**snap.sites, **topo_nodes}
        mine = {n for n, s in sites.items() if s == site}
        held = held_by(snap.in_flight, mine)
        if not start:
            start.append(held)
        quiet[0] = quiet[0] + 1 if not held else 0
        done = quiet[0] >= 2 and clock() - began >= settle_s
        others = held_by(snap.in_flight, {n for n in _all_nodes(snap.in_flight) if n not in mine})
        report = IdleReport(site, start[0], others, clock() - began)
        return done, report, f"site {site} holds {total(held)} batches ({describe(held)})"

    return wait_for(f"no node of site {site} to hold a batch", probe_once, timeout, interval)


def _all_nodes(in_flight: InFlight) -> set[str]:
    return {n for by in in_flight.values() for n in by}


# --- the operation as ``tenir site drain|undrain`` runs it -------------------------------------

def site_operation(topo: Topology, command: str, site: str, *, wait: bool, timeout: float,
                   say: Callable[[str], None], warn: Callable[[str], None]) -> dict[str, Any]:
    """Drain (``command`` ``drain``) or undrain ``site``; with ``wait``, wait until its nodes
    hold no batch. Says each sentence, records the change as an ``operator.*`` event (a problem
    recording it is warned, not raised) and returns what ``--json`` prints. Raises
    :class:`OperationError` (the drain is left set) when the wait times out."""
    from cluster.node_api import operator_token
    from cluster.wait import WaitTimeout

    drains = CoordinationDrains(topo)
    waiting = command == "drain" and wait
    # what --wait needs is found before anything changes
    probe = NodesClusterProbe(topo, operator_token("auditor")) if waiting else None
    if command == "drain":
        newly = drains.drain(site)
        sentence = (f"site {site} drained: its alert nodes take no new batch and finish the ones "
                    "they hold" if newly else f"site {site} was already drained")
    else:
        newly = drains.undrain(site)
        sentence = (f"site {site} undrained: its alert nodes take new batches again" if newly
                    else f"site {site} was not drained")
    say(sentence)
    result: dict[str, Any] = {"site": site, "drained": command == "drain",
                              "changed": newly, "sentence": sentence}
    failure: OperationError | None = None
    if probe is not None:
        nodes = {h.name: h.site for h in topo.hosts_running("alert_nodes")}
        try:
            report = wait_site_idle(site, nodes, probe, timeout,
                                    settle_s=max(1.0, topo.node_timings.retry_timeout))
        except WaitTimeout as exc:
            failure = OperationError(f"{exc}; site {site} stays drained (tenir site undrain "
                                     f"{site})")
        else:
            say(report.sentence())
            result["wait"] = report.to_json()
    if newly:  # recorded once the wait is over, so that it does not delay what it measures
        details = {"site": site, "by": drains.by, **({"wait": result["wait"]}
                                                     if "wait" in result else {})}
        problem = NodeApiEvents(topo).record(f"operator.{command}", sentence, details)
        if problem is not None:
            warn(problem)
    if failure is not None:
        raise failure
    return result


# --- evidence ----------------------------------------------------------------------------------

class EventSink(Protocol):
    def record(self, kind: str, sentence: str, details: Mapping[str, Any]) -> str | None:
        """Record an event; returns None, or why it could not be recorded."""


class NodeApiEvents:
    """:class:`EventSink` through any alert node (``POST /api/v1/events``): the CLI needs no
    database connection; the node stores the event in the campaign store under its own name."""

    def __init__(self, topo: Topology, token: str | None = None, timeout: float = 15.0) -> None:
        self.topo = topo
        self.token = token
        self.timeout = timeout

    def record(self, kind: str, sentence: str, details: Mapping[str, Any]) -> str | None:
        from cluster.httpjson import HttpError
        from cluster.node_api import ApiError, NodeApi, operator_token
        from cluster.wait import WaitTimeout

        try:
            api = NodeApi(self.topo, self.token or operator_token("oncall"), timeout=5.0)
        except ApiError as exc:
            return f"event not recorded: {exc}"
        body = {"kind": kind, "sentence": sentence, "details": dict(details)}

        def post() -> tuple[bool, str | None, str]:
            try:
                api.call("POST", "/events", body, accept=(201,))
            except ApiError as exc:
                cause = exc.__cause__
                if isinstance(cause, HttpError) and cause.status is not None \
                        and 400 <= cause.status < 500:
                    return True, f"event not recorded: {exc}", ""  # refused: retrying won't help
                raise
            return True, None, ""

        try:  # retried: right after a switchover the nodes may still be reconnecting
            return wait_for(f"an alert node to record the {kind} event", post, self.timeout,
                            interval=1.0)
        except WaitTimeout as exc:
            return f"event not recorded: {exc}"
