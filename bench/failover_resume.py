"""Time to resume deliveries after a fault, mid-campaign, beside PostgreSQL-only failover.

By default the fault is the loss of the site holding the PostgreSQL primary (a power cut of
every machine of that site), 5 runs on each coordination backend (etcd, then ZooKeeper; the lab
is brought up with each in turn). ``--all`` adds the kill -9 of an alert node, the loss of the
site without the primary and the isolation of a site. In each run a 100,000-recipient campaign
starts (``--population``), the fault is injected once 10,000 are done (``--kill-after``), and
we measure from the fault:

* from the carrier's side (the surviving site's simulator submission log, ``GET /submissions``
  on its control port): the first submission it received, the longest pause in its
  submissions (until the campaign's last one) and when that pause ended: when sending resumed;
* as before, the first outcome recorded by a node of the surviving site (the claim log's first
  accepted write once the fault is in place, the database's clock: an outcome the platform
  keeps), counted from the fault;
* takeover: when the failed side's work was moved (the watchdog's event);
* complete: when the campaign completed.

Why 100,000: while PostgreSQL fails over a survivor can send only what it holds (its batches
and its reserve claimed ahead, ``claim_ahead_s`` at its own rate). In a 20,000-recipient
campaign nearly everything is claimed within seconds, half of it by the site that dies: the
survivors finish their half in a few seconds and wait for the new primary to move the rest, so
the pause measures the campaign's size, not the platform. A 100,000-recipient campaign (about
75 s on the lab) lets every node hold its full reserve at the fault, as a national alert would.

In the same runs, the primary-site case also measures the PostgreSQL-only failover (the first
write that succeeds through the surviving site's HAProxy). Prints median and max per fault and
backend beside it, saves JSON under bench/results/. Root, after `make install`; about
25 minutes for the default (2 backends x 5 runs). The lab is driven only through
``cluster.lab.lab.Lab``'s ``up``, ``kill_site``, ``kill_service`` and ``service_pid`` (and
``down`` to change the coordination backend of a running lab).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from chaos.faults import Fault, IsolateSite, KillService, KillSite  # noqa: E402
from chaos.resume import longest_pause  # noqa: E402
from cluster.httpjson import request_json  # noqa: E402
from cluster.lab.access import owner_dsn  # noqa: E402
from cluster.lab.health import carriers_control_url, patroni_view  # noqa: E402
from cluster.lab.lab import Lab, lab_coordination  # noqa: E402
from cluster.node_api import ApiError, NodeApi, operator_token  # noqa: E402
from cluster.topology import (  # noqa: E402
    COORDINATION_BACKENDS,
    Topology,
    load_topology,
    with_coordination,
)

POPULATION = 100_000
KILL_AFTER = 10_000
PRIMARY_LOST = "primary site lost"
MEASURES = ("submit", "pause", "resumed", "resume", "takeover", "complete")
HEADS = {"submit": "1st submit", "pause": "pause", "resumed": "sending back",
         "resume": "1st outcome", "takeover": "work moved", "complete": "complete"}


def primary_site(topo: Topology) -> str:
    view = patroni_view(topo)
    assert view is not None and view.primary is not None
    return topo.hosts[view.primary].site


def other(topo: Topology, site: str) -> str:
    return next(s.name for s in topo.datacenter_sites if s.name != site)


def first_write_after(dsn: str, t0: float, deadline: float,
                      in_place: threading.Event) -> float | None:
    """Seconds from t0 to the first successful write through ``dsn`` (PostgreSQL only) begun
    once the fault is in place (a power cut takes most of a second to kill a site's machines:
    a write the doomed primary commits meanwhile is no failover)."""
    while time.time() < deadline:
        began_in_place = in_place.is_set()
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=1) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS bench_probe (at timestamptz)")
                conn.execute("INSERT INTO bench_probe VALUES (now())")
            if began_in_place:
                return time.time() - t0
        except psycopg.Error:
            pass
        time.sleep(0.05)
    return None


class CarrierLog:
    """A site's simulator submission log read from a cursor (its control port)."""

    def __init__(self, topo: Topology, site: str) -> None:
        host = next(h for h in topo.hosts_running("carriers") if h.site == site)
        self.url = f"{carriers_control_url(topo, host)}/submissions"
        _, head = request_json("GET", f"{self.url}?after=0&limit=1")
        self.cursor = int(head["last"])

    def times_since(self) -> list[float]:
        """The wall times of every submission after the cursor."""
        times: list[float] = []
        cursor = self.cursor
        while True:
            _, page = request_json("GET", f"{self.url}?after={cursor}&limit=10000",
                                   timeout=10.0)
            times += [float(s["at"]) for s in page["items"]]
            cursor = int(page["next"])
            if not page["items"] or cursor >= int(page["last"]):
                return times


def one_run(topo: Topology, lab: Lab, api: NodeApi, name: str,
            make: Callable[[], tuple[Fault, str, str | None]], population: int = POPULATION,
            kill_after: int = KILL_AFTER) -> dict[str, Any]:
    for host in topo.hosts_running("carriers"):
        request_json("POST", f"{carriers_control_url(topo, host)}/reset", {})
    fault, survivor_site, failed_node_prefix = make()
    carrier = CarrierLog(topo, survivor_site)
    campaign = int(api.call("POST", "/campaigns", {"scenario": "demo",
                                                  "population": population})["id"])
    while int(api.call("GET", f"/campaigns/{campaign}")["delivered"]) < kill_after:
        time.sleep(0.05)
    dsn = owner_dsn(topo, survivor_site)  # the probe creates its table
    pg_only: dict[str, float | None] = {}
    probe: threading.Thread | None = None
    t0 = time.time()
    injected = threading.Event()
    if name == PRIMARY_LOST:
        probe = threading.Thread(target=lambda: pg_only.update(
            s=first_write_after(dsn, t0, t0 + 120, injected)), daemon=True)
        probe.start()
    fault.inject()
    in_place = time.time()  # a write the doomed primary commits during the kill is no resume
    injected.set()
    try:
        resume = takeover = complete = None
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=1) as conn:
                    if resume is None:  # the first outcome write accepted (its own time)
                        row = conn.execute(
                            "SELECT extract(epoch FROM min(at)) FROM claim_log WHERE kind ="
                            " 'write' AND site = %s AND at > to_timestamp(%s)",
                            (survivor_site, in_place)).fetchone()
                        if row and row[0] is not None:
                            resume = float(row[0]) - t0
                    if takeover is None and failed_node_prefix is not None:
                        row = conn.execute(
                            "SELECT extract(epoch FROM min(at)) FROM events WHERE kind = "
                            "'watchdog.move' AND at > to_timestamp(%s) AND EXISTS (SELECT 1"
                            " FROM jsonb_object_keys(details->'moved') AS moved(node)"
                            " WHERE moved.node LIKE %s)",
                            (t0, f"{failed_node_prefix}%")).fetchone()
                        if row and row[0] is not None:
                            takeover = float(row[0]) - t0
                    state = conn.execute("SELECT state, extract(epoch FROM completed_at) FROM "
                                         "campaigns WHERE id = %s", (campaign,)).fetchone()
            except psycopg.Error:
                state = None
            if state is not None and state[0] == "completed":
                complete = float(state[1]) - t0
                break
            time.sleep(0.1)
        times = [t for t in carrier.times_since() if t > t0]
    finally:
        fault.heal()
        lab.up(timeout=240)
    if probe is not None:
        probe.join(timeout=130)
    pause = longest_pause(times, t0, max(times, default=t0))
    return {"submit_s": min(times) - t0 if times else None, "pause_s": round(pause.seconds, 3),
            "resumed_s": round(pause.ended_s, 3), "resume_s": resume, "takeover_s": takeover,
            "complete_s": complete, "pg_only_s": pg_only.get("s")}


def cases(topo: Topology, lab: Lab) -> dict[str, Callable[[], tuple[Fault, str, str | None]]]:
    def node() -> tuple[Fault, str, str | None]:
        return KillService(lab, "paris-node1", "node"), "marseille", "paris-node1"

    def site_without_primary() -> tuple[Fault, str, str | None]:
        lost = other(topo, primary_site(topo))
        return KillSite(lab, lost), other(topo, lost), f"{lost}-node"

    def primary_lost() -> tuple[Fault, str, str | None]:
        lost = primary_site(topo)
        return KillSite(lab, lost), other(topo, lost), f"{lost}-node"

    def isolation() -> tuple[Fault, str, str | None]:
        return IsolateSite(lab, "marseille"), "paris", "marseille-node"

    return {"alert node killed": node, "site without primary lost": site_without_primary,
            PRIMARY_LOST: primary_lost, "site isolated": isolation}


def stats(values: list[float | None]) -> dict[str, float | None]:
    got = [v for v in values if v is not None]
    return {"median": round(statistics.median(got), 2) if got else None,
            "max": round(max(got), 2) if got else None, "n": len(got)}


def run_backend(base: Topology, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    topo = with_coordination(base, backend)
    lab = Lab(topo, say=lambda s: None)
    running = lab_coordination(base)
    if running not in (None, backend):
        lab.down()  # a running lab does not change its coordination service
    print(f"coordination service: {backend}", flush=True)
    lab.up(timeout=300)
    api = NodeApi(topo, operator_token())
    results: dict[str, list[dict[str, Any]]] = {}
    for name, make in cases(topo, lab).items():
        if not (args.all or name == PRIMARY_LOST) or (args.only and args.only not in name):
            continue
        results[name] = []
        for i in range(args.runs):
            try:
                r = one_run(topo, lab, api, name, make, args.population, args.kill_after)
            except ApiError as exc:
                r = {"error": str(exc)}
            results[name].append(r)
            print(f"  {backend} {name} #{i + 1}: {r}", flush=True)
    summary = {name: {k: stats([r.get(f"{k}_s") for r in runs]) for k in MEASURES}
               for name, runs in results.items()}
    pg = stats([r.get("pg_only_s") for r in results.get(PRIMARY_LOST, [])])
    return {"summary": summary, "pg_only": pg, "raw": results}


def render(backend: str, out: dict[str, Any]) -> None:
    print(f"\n{backend}: seconds from the fault, median / max (carrier side: the surviving "
          "site's simulator)")
    print(f"{'fault':<27}" + "".join(f" {HEADS[k]:>13}" for k in MEASURES))
    for name, s in out["summary"].items():
        cells = "".join(f" {str(s[k]['median']) + '/' + str(s[k]['max']):>13}" for k in MEASURES)
        print(f"{name:<27}{cells}")
    pg = out["pg_only"]
    print(f"{'PostgreSQL-only failover':<27} {str(pg['median']) + '/' + str(pg['max']):>13}"
          "  (first write through the surviving HAProxy, in the primary-site runs)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--all", action="store_true",
                        help="every fault (node kill, either site lost, isolation), not only "
                        "the primary's site lost")
    parser.add_argument("--only", help="of those, only the faults whose name contains this")
    parser.add_argument("--population", type=int, default=POPULATION,
                        help=f"recipients of each run's campaign (default {POPULATION:,})")
    parser.add_argument("--kill-after", type=int, default=KILL_AFTER,
                        help=f"inject the fault once this many are delivered "
                        f"(default {KILL_AFTER:,})")
    parser.add_argument("--inventory", type=Path, default=REPO / "inventories" / "lab")
    parser.add_argument("--coordination", choices=COORDINATION_BACKENDS, nargs="+",
                        help="coordination services, one after the other (default: both, the "
                        "running lab's first); a lab running with another is taken down first")
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be between 1 and 20")
    if not 1_000 <= args.population <= 1_000_000:
        parser.error("--population must be between 1,000 and 1,000,000")
    if not 0 < args.kill_after < args.population:
        parser.error("--kill-after must be above 0 and below --population")
    base = load_topology(args.inventory)
    running = lab_coordination(base)
    backends = args.coordination or sorted(COORDINATION_BACKENDS,
                                           key=lambda b: (b != (running or base.coordination)))
    outs = {backend: run_backend(base, backend, args) for backend in backends}
    print("\nTime to resume deliveries after a fault, mid-campaign; 1st submit, pause and "
          "sending back from the carrier's side, 1st outcome as recorded by PostgreSQL")
    for backend, out in outs.items():
        render(backend, out)
    stamp = time.strftime('%Y%m%dT%H%M%S')
    path = REPO / "bench" / "results" / f"failover_resume-{stamp}.json"
    path.write_text(json.dumps({"benchmark": "failover_resume", "runs": args.runs,
                                "population": args.population, "kill_after": args.kill_after,
                                "backends": outs}, indent=2))
    print(f"results: {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
