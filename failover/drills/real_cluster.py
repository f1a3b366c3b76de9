"""The drill's reader and API on a real cluster (any inventory): the coordination members
(etcd's JSON gateway or ZooKeeper's ``srvr``), Patroni's REST API, HAProxy's admin sockets, and
the alert nodes' API (any node that answers, the last one that did first). The parts are read at
once, each within its own timeout: a dead site slows a read by one timeout, not by the sum."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

from cluster.httpjson import HttpError, request_json
from cluster.lab.health import haproxy_routes, patroni_view, probe_coordination
from cluster.node_api import ApiError, NodeApi, refusal
from cluster.topology import Topology
from failover.drills.facts import (
    CampaignFact,
    CoordMember,
    Facts,
    NodeMember,
    PgMember,
    Refused,
    Sites,
)

T = TypeVar("T")
NEWEST_CAMPAIGNS = 3  # the newest campaigns read each sample, whatever their state


class NodeError(RuntimeError):
    pass


class NodeRefused(NodeError, Refused):
    """A node answered with a refusal (4xx)."""


def sites_of(topo: Topology) -> Sites:
    dcs = [s.name for s in topo.datacenter_sites]
    witness = next(s.name for s in topo.sites.values() if not s.is_datacenter)
    return Sites((dcs[0], dcs[1]), witness,
                 {s: topo.postgres_host_of_site(s).name for s in dcs})


class Nodes(NodeApi):
    """The alert nodes' API as a drill uses it: a node that fails (5xx) is passed over for the
    next, and the node that answered last is asked first (a dead site costs one timeout)."""

    def __init__(self, topo: Topology, token: str, timeout: float = 3.0) -> None:
        try:
            super().__init__(topo, token, timeout)
        except ApiError as exc:
            raise NodeError(str(exc)) from None

    def call(self, method: str, path: str, body: Any = None,
             accept: tuple[int, ...] = (200, 201, 202)) -> Any:
        errors = []
        for base in list(self.bases):
            try:
                _, data = request_json(method, f"{base}/api/v1{path}", body,
                                       timeout=self.timeout, bearer=self.token,
                                       accept_status=accept)
            except HttpError as exc:
                if exc.status is not None and exc.status < 500:
                    raise NodeRefused(refusal(method, path, base, exc)) from exc
                errors.append(str(exc))
                continue
            if base != self.bases[0]:
                self.bases.remove(base)
                self.bases.insert(0, base)
            return data
        raise NodeError(f"no alert node answered {method} {path}: {'; '.join(errors)}")


def _part(pool: concurrent.futures.Executor, fn: Callable[[], T]
          ) -> concurrent.futures.Future[T]:
    return pool.submit(fn)


class RealCluster:
    """:class:`failover.drills.facts.ClusterReader` on the inventory's servers."""

    def __init__(self, topo: Topology, nodes: Nodes) -> None:
        self.topo = topo
        self.nodes = nodes
        self.site_of = {h.name: h.site for h in topo.hosts.values()}

    def _coordination(self) -> tuple[CoordMember, ...]:
        return tuple(CoordMember(m.name, self.site_of.get(m.name, "?"), m.healthy, m.leader)
                     for m in probe_coordination(self.topo))

    def _postgres(self) -> tuple[PgMember, ...] | None:
        view = patroni_view(self.topo)
        if view is None:
            return None
        return tuple(PgMember(m.name, m.site or self.site_of.get(m.name, "?"),
                              "leader" if m.role in ("leader", "master") else m.role, m.state,
                              m.lag_bytes) for m in view.members)

    def _haproxy(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for host in self.topo.hosts_running("haproxy"):
            try:
                out[host.name] = tuple(haproxy_routes(self.topo, host))
            except Exception:  # an HAProxy that does not answer routes nowhere
                out[host.name] = ()
        return out

    def _view(self) -> dict[str, Any]:
        data = self.nodes.call("GET", "/cluster")
        if not isinstance(data, dict):
            raise NodeError("the cluster view is not an object")
        return data

    def _campaigns(self) -> tuple[CampaignFact, ...]:
        scenarios = {s["name"]: int(s["priority"])
                     for s in self.nodes.call("GET", "/scenarios")["items"]}
        # The running and paused ones, and the newest few whatever their state (a real alert
        # to a small group may be launched and completed between two samples). Not every
        # finished one: summing their outcomes each second outgrew the call's timeout on a lab
        # with a few million outcomes.
        items = {int(c["id"]): c for c in self.nodes.call(
            "GET", f"/campaigns?limit={NEWEST_CAMPAIGNS}")["items"]}
        items.update((int(c["id"]), c) for c in self.nodes.call(
            "GET", "/campaigns?state=running,paused&limit=500")["items"])
        return tuple(CampaignFact(i, str(c["scenario"]), str(c["state"]),
                                  scenarios.get(str(c["scenario"])))
                     for i, c in sorted(items.items()))

    def facts(self) -> Facts:
        errors: list[str] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
            parts: dict[str, concurrent.futures.Future[Any]] = {
                     "coordination": _part(pool, self._coordination),
                     "postgres": _part(pool, self._postgres),
                     "haproxy": _part(pool, self._haproxy),
                     "view": _part(pool, self._view),
                     "campaigns": _part(pool, self._campaigns)}
            got: dict[str, Any] = {}
            for name, future in parts.items():
                try:
                    got[name] = future.result()
                except Exception as exc:
                    got[name] = None
                    errors.append(f"{name}: {exc}")
        view = got["view"] or {}
        members = view.get("members")
        nodes = None if members is None else tuple(
            NodeMember(str(m["name"]), str(m["site"]), tuple(m.get("carriers") or ()))
            for m in members)
        drained = view.get("drained_sites")
        return Facts(coordination=got["coordination"] or (), postgres=got["postgres"],
                     haproxy=got["haproxy"], nodes=nodes,
                     drained=None if drained is None else tuple(drained),
                     campaigns=got["campaigns"], errors=tuple(errors))


class NodeDrillApi:
    """:class:`failover.drills.facts.DrillApi` and ``runner.DrillControl`` on the nodes."""

    def __init__(self, nodes: Nodes) -> None:
        self.nodes = nodes
        self.run_id: str | None = None

    def launch(self, scenario: str, *, population: int | None, group: str | None,
               batch_size: int) -> int:
        if self.run_id is None:
            raise NodeError("the drill's campaign is launched once the run is accepted")
        body: dict[str, Any] = {"scenario": scenario, "batch_size": batch_size}
        body.update({"population": population} if population is not None else {"group": group})
        return int(self.nodes.call("POST", f"/drills/runs/{self.run_id}/campaign", body)["id"])

    def campaign(self, campaign_id: int) -> dict[str, Any]:
        data: dict[str, Any] = self.nodes.call("GET", f"/campaigns/{campaign_id}")
        return data

    def events(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self.nodes.call("GET", f"/events?limit={limit}")["items"])

    def start_run(self, kind: str, run_id: str, *, approval: str | None,
                  approved_by: str | None) -> dict[str, Any]:
        body = {"drill": kind, "run_id": run_id, "approval": approval,
                "approved_by": approved_by}
        data: dict[str, Any] = self.nodes.call("POST", "/drills/runs",
                                               {k: v for k, v in body.items() if v is not None})
        self.run_id = run_id
        return data

    def store_record(self, run_id: str, record: dict[str, Any]) -> int:
        return int(self.nodes.call("POST", f"/drills/runs/{run_id}/record", record)["seq"])

    def cancel_campaign(self, campaign_id: int) -> None:
        self.nodes.call("POST", f"/campaigns/{campaign_id}/cancel", {})
