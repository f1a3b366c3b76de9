"""An in-memory cluster for the drills' unit tests, implementing what a drill reads
(``ClusterReader``), what its faults act through (``Platform``), the nodes' API it uses
(``DrillApi``) and the runner's side of the nodes (``DrillControl``); every change is logged
in order (``log``) and ``snapshot()`` is its whole state, to compare before and after.

Two datacenter sites (paris, marseille) and a witness: a coordination member per site, a
PostgreSQL per datacenter site (paris-db the primary, marseille-db the synchronous standby), an
HAProxy per datacenter site, two alert nodes per datacenter site. The drill campaign advances
with the wall clock: ``rate_per_site`` final outcomes per second at each datacenter site that is
up, has a working carrier and a PostgreSQL primary to write to; a primary's site lost promotes
the other after ``failover_s`` seconds.
"""

from __future__ import annotations

import copy
import threading
import time
from datetime import UTC, datetime
from typing import Any

from failover.drills.facts import (
    CampaignFact,
    CoordMember,
    Facts,
    NodeMember,
    PgMember,
    Sites,
)
from failover.evidence.records import validate
from replication.store_api import CHANNELS

SITES = Sites(("paris", "marseille"), "witness",
              {"paris": "paris-db", "marseille": "marseille-db"})
COORD = {"paris": "paris-db", "marseille": "marseille-db", "witness": "witness-quorum"}
NODES = {"paris": ("paris-node1", "paris-node2"),
         "marseille": ("marseille-node1", "marseille-node2")}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


class FakeFault:
    def __init__(self, cluster: FakeCluster, description: str, inject: Any, heal: Any) -> None:
        self.cluster = cluster
        self.description = description
        self._inject = inject
        self._heal = heal

    def describe(self) -> str:
        return self.description

    def inject(self) -> None:
        with self.cluster.lock:
            self.cluster.log.append(f"inject: {self.description}")
            self._inject()

    def heal(self) -> None:
        with self.cluster.lock:
            self.cluster.log.append(f"heal: {self.description}")
            self._heal()


class FakeCluster:
    name = "fake"

    def __init__(self, *, rate_per_site: float = 400.0, failover_s: float = 0.3) -> None:
        self.lock = threading.RLock()
        self.log: list[str] = []
        self.up = {"paris": True, "marseille": True, "witness": True}
        self.primary: str | None = "paris"  # the site of the PostgreSQL primary
        self.standby: str | None = "marseille"
        self.lag = 0
        self.link_cut = False
        self.carriers_down: set[str] = set()
        self.drained: set[str] = set()
        self.leader = "paris-db"
        self.lost_primary_at: float | None = None
        self.failover_s = failover_s
        self.rate = rate_per_site
        self.campaigns: dict[int, dict[str, Any]] = {}
        self.real_priority: dict[int, int] = {}
        self.next_id = 1
        self.started_runs: list[dict[str, Any]] = []
        self.records: dict[str, dict[str, Any]] = {}
        self.cancelled: list[int] = []
        self.heal_fails = False

    # --- ClusterReader ---------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.time()
        if self.primary is None and self.lost_primary_at is not None \
                and now - self.lost_primary_at >= self.failover_s:
            survivor = next(s for s in SITES.datacenters if self.up[s])
            self.primary, self.standby, self.lost_primary_at = survivor, None, None
            self.leader = COORD[survivor]
        for c in self.campaigns.values():
            if c["state"] != "running" or c.get("real"):
                continue
            dt = now - c["t"]
            c["t"] = now
            for site in SITES.datacenters:
                if self.up[site] and site not in self.carriers_down and self.primary:
                    add = min(c["recipients"] - c["done"], round(self.rate * dt))
                    c["done"] += add
                    c["by_site"][site] = c["by_site"].get(site, 0) + add
            if c["done"] >= c["recipients"]:
                c["state"] = "completed"
                c["completed_at"] = now

    def facts(self) -> Facts:
        with self.lock:
            self._tick()
            coord = tuple(CoordMember(name, site, self.up[site], name == self.leader)
                          for site, name in COORD.items())
            pg = []
            for site in SITES.datacenters:
                if not self.up[site]:
                    continue
                role = ("leader" if site == self.primary else
                        "sync_standby" if site == self.standby else "replica")
                state = "running" if role == "leader" else (
                    "streaming" if not self.link_cut else "stopped")
                pg.append(PgMember(f"{site}-db", site, role, state,
                                   self.lag if role != "leader" else 0))
            primary = f"{self.primary}-db" if self.primary else None
            haproxy = {f"{s}-db": ((primary,) if primary else ())
                       for s in SITES.datacenters if self.up[s]}
            nodes = tuple(NodeMember(n, s, () if s in self.carriers_down else CHANNELS)
                          for s in SITES.datacenters if self.up[s] for n in NODES[s])
            campaigns = tuple(CampaignFact(i, "real" if c.get("real") else "demo",
                                           c["state"], self.real_priority.get(i, 2))
                              for i, c in self.campaigns.items())
            return Facts(coordination=coord, postgres=tuple(pg), haproxy=haproxy,
                         nodes=nodes, drained=tuple(sorted(self.drained)),
                         campaigns=campaigns)

    # --- Platform ----------------------------------------------------------------------------
    def power_cut(self, site: str) -> FakeFault:
        def cut() -> None:
            self.up[site] = False
            if self.primary == site:
                self.primary = None
                self.lost_primary_at = time.time()
            if self.standby == site:
                self.standby = None
            if self.leader == COORD[site]:
                self.leader = next(COORD[s] for s in COORD if self.up[s])

        def back() -> None:
            if self.heal_fails:
                raise RuntimeError(f"site {site} does not boot")
            self.up[site] = True
            if site in SITES.datacenters and self.primary != site:
                self.standby = site

        return FakeFault(self, f"power cut of site {site}", cut, back)

    def cut_link(self, site_a: str, site_b: str) -> FakeFault:
        def cut() -> None:
            self.link_cut = True

        def back() -> None:
            self.link_cut = False

        return FakeFault(self, f"cut the link between {site_a} and {site_b}", cut, back)

    def carrier_outage(self, site: str) -> FakeFault:
        return FakeFault(self, f"every carrier of {site} refuses",
                         lambda: self.carriers_down.add(site),
                         lambda: self.carriers_down.discard(site))

    def switchover(self, to_site: str, from_site: str) -> FakeFault:
        def move(to: str) -> None:
            self.standby, self.primary = self.primary, to
            self.leader = COORD[to]

        return FakeFault(self, f"planned switchover to {to_site}", lambda: move(to_site),
                         lambda: move(from_site) if self.primary != from_site else None)

    def touches(self, operation: str, **params: str) -> list[str]:
        return [f"fake {operation} {' '.join(f'{k}={v}' for k, v in sorted(params.items()))}"]

    # --- DrillApi ----------------------------------------------------------------------------
    def launch(self, scenario: str, *, population: int | None, group: str | None,
               batch_size: int) -> int:
        with self.lock:
            self.log.append(f"launch {scenario} {population or group}")
            cid = self.next_id
            self.next_id += 1
            self.campaigns[cid] = {"recipients": population or 10, "done": 0, "by_site": {},
                                   "state": "running", "t": time.time(),
                                   "started": time.time(), "completed_at": None}
            return cid

    def launch_real(self, priority: int = 1) -> int:
        """A real campaign (an operator's), which the drill must notice."""
        with self.lock:
            cid = self.next_id
            self.next_id += 1
            self.campaigns[cid] = {"recipients": 10, "done": 0, "by_site": {},
                                   "state": "running", "t": time.time(), "real": True,
                                   "started": time.time(), "completed_at": None}
            self.real_priority[cid] = priority
            return cid

    def campaign(self, campaign_id: int) -> dict[str, Any]:
        with self.lock:
            self._tick()
            c = self.campaigns[campaign_id]
            done = c["completed_at"]
            return {"id": campaign_id, "state": c["state"], "recipients": c["recipients"],
                    "delivered": c["done"], "acknowledged": 0, "failed": 0,
                    "by_site": dict(c["by_site"]), "started_at": _iso(c["started"]),
                    "completed_at": None if done is None else _iso(done)}

    def events(self, limit: int = 50) -> list[dict[str, Any]]:
        return []

    # --- DrillControl ------------------------------------------------------------------------
    def start_run(self, kind: str, run_id: str, *, approval: str | None,
                  approved_by: str | None) -> dict[str, Any]:
        with self.lock:
            self.log.append(f"start_run {run_id}")
            self.started_runs.append({"drill": kind, "run_id": run_id, "approval": approval})
            return {"run_id": run_id, "runner": "oncall:1111", "approver": "operator:2222"}

    def store_record(self, run_id: str, record: dict[str, Any]) -> int:
        validate(record)  # what the node will check
        self.records[run_id] = record
        return len(self.records)

    def cancel_campaign(self, campaign_id: int) -> None:
        with self.lock:
            self.log.append(f"cancel {campaign_id}")
            self.cancelled.append(campaign_id)
            self.campaigns[campaign_id]["state"] = "cancelled"

    # --- before/after --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            state = {k: copy.deepcopy(v) for k, v in vars(self).items()
                     if k not in ("lock", "log")}
            for c in state["campaigns"].values():
                c.pop("t", None)
            return state
