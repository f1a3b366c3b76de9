"""Time to resume deliveries after each fault, mid-campaign, beside PostgreSQL-only failover.

For each fault (kill -9 of an alert node, loss of the site without the PostgreSQL primary, loss
of the primary's site, isolation of a site) and each of N runs: a 20,000-recipient campaign
starts, the fault is injected once 2,000 are delivered, and we measure

* resume: seconds from the fault to the first delivery recorded afterwards by a node that
  survived it (the database's clock; a delivery recorded means an outcome the platform keeps);
* takeover: seconds until the failed side's work was moved (the watchdog's event), where
  the fault has such a side;
* complete: seconds until the campaign completed.

In the same run, the primary-site case also measures the PostgreSQL-only failover (first write
that succeeds through the surviving site's HAProxy). Prints median and max per fault beside
it, saves JSON under bench/results/. Root, after `make install`; about 15 minutes for N = 5.
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

POPULATION = 20_000
KILL_AFTER = 2_000


def primary_site(topo: Topology) -> str:
    view = patroni_view(topo)
    assert view is not None and view.primary is not None
    return topo.hosts[view.primary].site


def other(topo: Topology, site: str) -> str:
    return next(s.name for s in topo.datacenter_sites if s.name != site)


def first_write_after(dsn: str, t0: float, deadline: float) -> float | None:
    """Seconds from t0 to the first successful write through ``dsn`` (PostgreSQL only)."""
    while time.time() < deadline:
        began = time.time()
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=1) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS bench_probe (at timestamptz)")
                conn.execute("INSERT INTO bench_probe VALUES (now())")
            if began >= t0:
                return time.time() - t0
        except psycopg.Error:
            pass
        time.sleep(0.05)
    return None


def one_run(topo: Topology, lab: Lab, api: NodeApi, name: str,
            make: Callable[[], tuple[Fault, str, str | None]]) -> dict[str, Any]:
    for host in topo.hosts_running("carriers"):
        url = carriers_control_url(topo, host)
        request_json("POST", f"{url}/reset", {})
    fault, survivor_site, failed_node_prefix = make()
    campaign = int(api.call("POST", "/campaigns", {"scenario": "demo",
                                                  "population": POPULATION})["id"])
    while int(api.call("GET", f"/campaigns/{campaign}")["delivered"]) < KILL_AFTER:
        time.sleep(0.05)
    dsn = owner_dsn(topo, survivor_site)  # the probe creates its table
    pg_only: dict[str, float | None] = {}
    probe: threading.Thread | None = None
    t0 = time.time()
    if name == "primary site lost":
        probe = threading.Thread(target=lambda: pg_only.update(
            s=first_write_after(dsn, t0, t0 + 120)), daemon=True)
        probe.start()
    fault.inject()
    try:
        resume = takeover = None
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=1) as conn:
                    if resume is None:
                        row = conn.execute(
                            "SELECT extract(epoch FROM min(updated_at)) FROM attempts WHERE "
                            "campaign_id = %s AND site = %s AND updated_at > to_timestamp(%s)",
                            (campaign, survivor_site, t0)).fetchone()
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
        else:
            complete = None
    finally:
        fault.heal()
        lab.up(timeout=240)
    if probe is not None:
        probe.join(timeout=130)
    return {"resume_s": resume, "takeover_s": takeover, "complete_s": complete,
            "pg_only_s": pg_only.get("s")}


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
            "primary site lost": primary_lost, "site isolated": isolation}


def stats(values: list[float | None]) -> dict[str, float | None]:
    got = [v for v in values if v is not None]
    return {"median": round(statistics.median(got), 2) if got else None,
            "max": round(max(got), 2) if got else None, "n": len(got)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", help="run only the fault whose name contains this")
    parser.add_argument("--inventory", type=Path, default=REPO / "inventories" / "lab")
    parser.add_argument("--coordination", choices=COORDINATION_BACKENDS,
                        help="coordination service (default: the running lab's, else the "
                        "inventory's); a lab running with the other one is taken down first")
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be between 1 and 20")
    topo = load_topology(args.inventory)
    running = lab_coordination(topo)
    backend = args.coordination or running or topo.coordination
    topo = with_coordination(topo, backend)
    lab = Lab(topo, say=lambda s: None)
    if running not in (None, backend):
        lab.down()  # asked for the other backend: a running lab does not change its DCS
    print(f"coordination service: {topo.coordination}", flush=True)
    lab.up(timeout=300)
    api = NodeApi(topo, operator_token())
    results: dict[str, list[dict[str, Any]]] = {}
    for name, make in cases(topo, lab).items():
        if args.only and args.only not in name:
            continue
        results[name] = []
        for i in range(args.runs):
            try:
                r = one_run(topo, lab, api, name, make)
            except ApiError as exc:
                r = {"error": str(exc)}
            results[name].append(r)
            print(f"  {name} #{i + 1}: {r}", flush=True)
    pg = stats([r.get("pg_only_s") for r in results.get("primary site lost", [])])
    print("\nTime to resume deliveries after a fault, mid-campaign (seconds; median / max)")
    print(f"{'fault':<28} {'resume':>14} {'work moved':>14} {'complete':>14}")
    summary = {}
    for name, runs in results.items():
        s = {k: stats([r.get(f"{k}_s") for r in runs]) for k in ("resume", "takeover",
                                                                  "complete")}
        summary[name] = s
        cell = {k: f"{v['median']} / {v['max']}" for k, v in s.items()}
        print(f"{name:<28} {cell['resume']:>14} {cell['takeover']:>14} {cell['complete']:>14}")
    pg_cell = f"{pg['median']} / {pg['max']}"
    print(f"{'PostgreSQL-only failover':<28} {pg_cell:>14}   (first write through the surviving"
          " HAProxy, in the primary-site runs)")
    out = REPO / "bench" / "results" / f"failover_resume-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"benchmark": "failover_resume", "runs": args.runs,
                               "coordination": topo.coordination,
                               "summary": summary, "pg_only": pg, "raw": results}, indent=2))
    print(f"results: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
