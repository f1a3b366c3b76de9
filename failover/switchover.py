"""``tenir switchover --to SITE``: move the work and the PostgreSQL primary to SITE, planned.

Steps, each printed with its duration:

0. preflight (nothing changes): SITE is a datacenter site and is not drained; Patroni has a
   primary and, if the primary is elsewhere, SITE's PostgreSQL is the streaming synchronous
   standby (a switchover to anything else could lose acknowledged writes); every HAProxy's
   statistics answer (read-only, over HTTPS);
1. drain the other datacenter site (``failover/drain.py``) and wait until its nodes hold no batch:
   its work is now done by SITE's nodes;
2. if the primary is not in SITE: ask Patroni to switch over (leader = old primary, candidate =
   SITE's PostgreSQL) and wait until Patroni reports the candidate as primary and every HAProxy
   routes only to it. No HAProxy server is set to ``drain`` first: with the other site drained,
   the old primary's only clients are the nodes' pools, which that draining would not close;
   Patroni's switchover stops the old primary (its sessions end), and HAProxy's health check of
   Patroni's ``/primary`` (every 500 ms, ``on-marked-down shutdown-sessions``) sends the next
   connections to the new one. HAProxy's runtime API is then needed by nothing remote: it is a
   UNIX socket on each HAProxy machine only;
3. undrain the other site (unless it was drained before the switchover: then it stays drained).

Every wait is bounded (``timeout``) and its timeout names what it waited for. On any failure a
site this run drained is undrained, so the cluster is left taking work on both sites; the error
says what was restored.
Success and failure are recorded as an ``operator.switchover`` event through an alert node.

Collaborators (drains, cluster probe, Patroni, HAProxies, events, clock, output) are passed in:
the unit tests use fakes and assert on the order of operations and the sentences.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cluster.topology import Topology
from cluster.wait import wait_for
from failover.drain import (
    ClusterProbe,
    DrainControl,
    EventSink,
    IdleReport,
    OperationError,
    total,
    wait_site_idle,
)
from replication.haproxy import ServerState
from replication.patroni import PatroniCluster

PROXY = "postgres_primary"


class SwitchoverFailed(OperationError):
    pass


class PatroniControl(Protocol):
    def cluster(self) -> PatroniCluster: ...
    def switchover(self, leader: str, candidate: str) -> str: ...


class HAProxyView(Protocol):
    def servers(self, proxy: str | None = None) -> list[ServerState]: ...


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    sentence: str


@dataclass
class _Progress:
    """What this run changed so far (what a failure must restore)."""

    newly_drained: bool = False
    undrained: bool = False
    idle: IdleReport | None = None


@dataclass
class SwitchoverReport:
    to_site: str
    other_site: str
    primary_before: str | None = None
    primary_after: str | None = None
    steps: list[Step] = field(default_factory=list)
    ok: bool = False
    seconds: float = 0.0
    sentence: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"to": self.to_site, "drained": self.other_site, "ok": self.ok,
                "primary_before": self.primary_before, "primary_after": self.primary_after,
                "seconds": round(self.seconds, 2), "sentence": self.sentence,
                "steps": [{"step": s.name, "seconds": round(s.seconds, 2),
                           "sentence": s.sentence} for s in self.steps]}


class Switchover:
    def __init__(self, *, sites: Sequence[str], postgres_of_site: Mapping[str, str],
                 nodes: Mapping[str, str], drains: DrainControl, cluster: ClusterProbe,
                 patroni: PatroniControl, haproxies: Mapping[str, HAProxyView],
                 events: EventSink | None = None, say: Callable[[str], None] = print,
                 timeout: float = 120.0, poll_s: float = 0.25, settle_s: float = 1.0,
                 proxy: str = PROXY, clock: Callable[[], float] = time.monotonic) -> None:
        self.sites = list(sites)
        self.postgres_of_site = dict(postgres_of_site)
        self.nodes = dict(nodes)  # alert node -> site, from the inventory
        self.drains = drains
        self.cluster = cluster
        self.patroni = patroni
        self.haproxies = dict(haproxies)
        self.events = events
        self.say = say
        self.timeout = timeout
        self.poll_s = poll_s
        self.settle_s = settle_s
        self.proxy = proxy
        self.clock = clock

    # --- plumbing ----------------------------------------------------------------------------
    def _step(self, report: SwitchoverReport, name: str, action: Callable[[], str]) -> None:
        began = self.clock()
        try:
            sentence = action()
        except Exception as exc:
            self.say(f"{len(report.steps) + 1}. {name}: FAILED after "
                     f"{self.clock() - began:.1f} s: {exc}")
            raise
        step = Step(name, self.clock() - began, sentence)
        report.steps.append(step)
        self.say(f"{len(report.steps)}. {sentence} ({step.seconds:.1f} s)")

    def _routes(self) -> dict[str, list[str]]:
        return {name: [s.server for s in admin.servers(self.proxy) if s.up]
                for name, admin in self.haproxies.items()}

    def _record(self, report: SwitchoverReport) -> None:
        if self.events is None:
            return
        problem = self.events.record("operator.switchover", report.sentence, report.to_json())
        if problem is not None:
            self.say(problem)

    # --- the operation -----------------------------------------------------------------------
    def preflight(self, to_site: str) -> tuple[str, str, str, bool]:
        """(other site, primary, candidate, other site drained before); nothing changes."""
        if to_site not in self.sites:
            raise SwitchoverFailed(f"{to_site!r} is not a datacenter site (sites: "
                                   f"{', '.join(self.sites)})")
        other = next(s for s in self.sites if s != to_site)
        drained = self.drains.drained()
        if to_site in drained:
            raise SwitchoverFailed(f"site {to_site} is drained: it is to take all the work; "
                                   f"undrain it first (tenir site undrain {to_site})")
        view = self.patroni.cluster()
        primary = view.primary
        if primary is None:
            raise SwitchoverFailed("Patroni reports no PostgreSQL primary: this is a failover, "
                                   "not a switchover")
        candidate = self.postgres_of_site[to_site]
        if primary != candidate and view.sync_standby != candidate:
            raise SwitchoverFailed(
                f"{candidate} is not the streaming synchronous standby (that is "
                f"{view.sync_standby or 'nobody'}): switching over to it could lose acknowledged "
                "writes")
        try:
            self._routes()
        except Exception as exc:
            raise SwitchoverFailed(f"an HAProxy's statistics do not answer ({exc})") from exc
        return other, primary, candidate, other in drained

    def run(self, to_site: str) -> SwitchoverReport:
        began = self.clock()
        report = SwitchoverReport(to_site, next((s for s in self.sites if s != to_site), "?"))
        state = _Progress()
        try:
            self._step(report, "preflight", lambda: self._preflight_sentence(to_site, report))
            self._move_work(report, state)
            self._move_primary(report, state)
            self._give_back(report, state)
        except Exception as exc:
            restored = self._restore(report, state)
            report.seconds = self.clock() - began
            report.sentence = (f"switchover to {to_site} FAILED after {report.seconds:.1f} s: "
                               f"{exc}; {restored}")
            if report.steps:  # something may have changed: leave evidence
                self._record(report)
            raise SwitchoverFailed(report.sentence) from exc
        report.ok = True
        report.seconds = self.clock() - began
        report.sentence = self._final_sentence(report, state)
        self.say(report.sentence)
        self._record(report)
        return report

    def _preflight_sentence(self, to_site: str, report: SwitchoverReport) -> str:
        other, primary, candidate, drained_before = self.preflight(to_site)
        report.other_site, report.primary_before = other, primary
        report.primary_after = candidate
        pg = (f"primary {primary} is already in {to_site}" if primary == candidate else
              f"primary {primary}, synchronous standby {candidate} streaming")
        return (f"preflight: {pg}; {len(self.haproxies)} HAProxies answer; site {other} "
                f"{'is already drained' if drained_before else 'takes work'}")

    def _move_work(self, report: SwitchoverReport, state: _Progress) -> None:
        other = report.other_site

        def drain() -> str:
            state.newly_drained = self.drains.drain(other)
            return (f"site {other} drained: its nodes take no new batch" if state.newly_drained
                    else f"site {other} was already drained")

        self._step(report, f"drain {other}", drain)

        def wait_idle() -> str:
            state.idle = wait_site_idle(other, self.nodes, self.cluster, self.timeout,
                                        settle_s=self.settle_s, interval=self.poll_s,
                                        clock=self.clock)
            return state.idle.sentence()

        self._step(report, f"wait for {other} to finish its batches", wait_idle)

    def _move_primary(self, report: SwitchoverReport, state: _Progress) -> None:
        primary, candidate = report.primary_before, report.primary_after
        assert primary is not None and candidate is not None
        if primary == candidate:
            def check() -> str:
                self._wait_primary(candidate)
                return (f"PostgreSQL primary {candidate} is already in {report.to_site} and "
                        "every HAProxy routes only to it: nothing to switch")

            self._step(report, "postgres", check)
            return
        def switch() -> str:
            answer = self.patroni.switchover(primary, candidate)
            return f"Patroni switchover {primary} -> {candidate}: {str(answer).strip()[:120]}"

        self._step(report, "patroni switchover", switch)

        def wait_new() -> str:
            self._wait_primary(candidate)
            return f"{candidate} is the PostgreSQL primary and every HAProxy routes only to it"

        self._step(report, "wait for the new primary", wait_new)

    def _wait_primary(self, candidate: str) -> None:
        def probe() -> tuple[bool, None, str]:
            view = self.patroni.cluster()
            routes = self._routes()
            ok = view.primary == candidate and all(r == [candidate] for r in routes.values())
            return ok, None, f"primary {view.primary or 'none'}, HAProxy routes {routes}"

        wait_for(f"{candidate} to be the PostgreSQL primary and every HAProxy to route only to "
                 "it", probe, self.timeout, self.poll_s)

    def _give_back(self, report: SwitchoverReport, state: _Progress) -> None:
        other = report.other_site
        if not state.newly_drained:
            self._step(report, f"leave {other} drained",
                       lambda: f"site {other} was drained before the switchover: left drained")
            return

        def undrain() -> str:
            self.drains.undrain(other)
            state.undrained = True
            return f"site {other} undrained: its nodes take new batches again"

        self._step(report, f"undrain {other}", undrain)

    def _restore(self, report: SwitchoverReport, state: _Progress) -> str:
        said = []
        if state.newly_drained and not state.undrained:
            try:
                self.drains.undrain(report.other_site)
                said.append(f"site {report.other_site} undrained")
            except Exception as exc:
                said.append(f"could NOT undrain site {report.other_site} ({exc}): run tenir "
                            f"site undrain {report.other_site}")
        return "restored: " + "; ".join(said) if said else "nothing was changed"

    def _final_sentence(self, report: SwitchoverReport, state: _Progress) -> str:
        idle = state.idle
        assert idle is not None
        work = (f"the {total(idle.held_at_start)} batches {idle.site} held were finished there "
                "before the move" if idle.held_at_start else f"{idle.site} held no batch")
        back = (f"{report.other_site} takes new batches again" if state.undrained
                else f"{report.other_site} stays drained, as it was before")
        if report.primary_before == report.primary_after:
            pg = (f"the PostgreSQL primary {report.primary_after} was already in "
                  f"{report.to_site}")
        else:
            pg = (f"PostgreSQL primary {report.primary_after} (was {report.primary_before}), "
                  "every HAProxy routes only to it")
        return (f"switchover to {report.to_site} done in {report.seconds:.1f} s: {pg}; {work}; "
                f"{back}.")


# --- the real collaborators ------------------------------------------------------------------

def patroni_auth(topo: Topology) -> tuple[str, str]:
    """Patroni's REST API credentials: ``$TENIR_PATRONI_PASSWORD``, else the lab's secret."""
    from cluster.credentials import secret
    from cluster.settings import setting

    user = str(setting(topo, None, "patroni", "patroni_restapi_username"))
    password = secret("TENIR_PATRONI_PASSWORD", "restapi")
    if not password:
        raise OperationError("no password for Patroni's REST API: set TENIR_PATRONI_PASSWORD "
                             "(the lab's secret exists once it is up)")
    return user, password


class PatroniRest:
    """:class:`PatroniControl` on every Patroni REST API of the inventory."""

    def __init__(self, topo: Topology, auth: tuple[str, str]) -> None:
        from cluster.lab.health import patroni_client

        self.clients = {h.name: patroni_client(topo, h, auth)
                        for h in topo.hosts_running("postgres")}

    def cluster(self) -> PatroniCluster:
        problems = []
        for name, client in self.clients.items():
            try:
                return client.cluster()
            except Exception as exc:
                problems.append(f"{name}: {exc}")
        raise OperationError(f"no Patroni REST API answered: {'; '.join(problems)}")

    def switchover(self, leader: str, candidate: str) -> str:
        return self.clients[leader].switchover(leader, candidate)


def build_switchover(topo: Topology, *, say: Callable[[str], None], timeout: float,
                     token: str | None = None) -> Switchover:
    from cluster.lab.health import haproxy_stats
    from cluster.node_api import operator_token
    from failover.drain import CoordinationDrains, NodeApiEvents, NodesClusterProbe

    return Switchover(
        sites=[s.name for s in topo.datacenter_sites],
        postgres_of_site={s.name: topo.postgres_host_of_site(s.name).name
                          for s in topo.datacenter_sites},
        nodes={h.name: h.site for h in topo.hosts_running("alert_nodes")},
        drains=CoordinationDrains(topo),
        cluster=NodesClusterProbe(topo, token or operator_token("auditor")),
        patroni=PatroniRest(topo, patroni_auth(topo)),
        haproxies={h.name: haproxy_stats(topo, h) for h in topo.hosts_running("haproxy")},
        events=NodeApiEvents(topo, token), say=say, timeout=timeout,
        settle_s=max(1.0, topo.node_timings.retry_timeout))
