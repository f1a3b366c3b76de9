"""End-to-end campaign throughput, on loopback (default) or in the lab, beside its references.

Loopback (``--mode loopback``, no root needed): see ``bench/throughput_loopback.py``; the
checkout under test and ``--baseline`` (a git ref, default chaos-core) are measured in the same
run, one after the other, with the same harness, and printed side by side
(``bench/throughput_report.py``).

Lab (``--mode lab``, root): both sites dispatching, synchronous replication on.

For each campaign size (default 10,000, 100,000 and 1,000,000 generated recipients of the `demo`
scenario) it launches through a node's API and follows the campaign to completion, then reports
alerts per hour, seconds to the first message (first attempt recorded minus launch) and to
completion, and the CPU seconds and peak memory of each component. Beside each figure: the
reference vendor's claim (410,000 alerts per hour on two sites) and the raw limit of the same lab,
bulk row updates per second that PostgreSQL sustains through HAProxy with the same synchronous
replication, measured in the same run. JSON results go to bench/results/.

Usage: .venv/bin/python bench/campaign_throughput.py [--sizes ...] [--big 5000000] [--mode lab]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.throughput_loopback import raw_update_limit  # noqa: E402
from bench.throughput_report import loopback_main  # noqa: E402
from cluster.campaign_cli import carriers_report  # noqa: E402
from cluster.httpjson import request_json  # noqa: E402
from cluster.lab import netns  # noqa: E402
from cluster.lab.access import app_dsn, owner_dsn  # noqa: E402
from cluster.lab.health import carriers_control_url, patroni_view  # noqa: E402
from cluster.lab.lab import Lab  # noqa: E402
from cluster.node_api import NodeApi, operator_token  # noqa: E402
from cluster.topology import Topology, load_topology  # noqa: E402

REFERENCE_PER_HOUR = 410_000
# The lab's figures when issue 13 was filed (the process lab, before the cuts): a commit that old
# cannot be deployed on today's machine lab, so the lab mode prints its stored figures beside.
LAB_REFERENCE = REPO / "bench" / "results" / "campaign_throughput-20261128T210144.json"
CLK_TCK = 100


def component_of(host: str, comm: str) -> str:
    if host.endswith("-carriers"):
        return "carrier simulators"
    if "-node" in host:
        return "alert nodes"
    return {"postgres": "postgresql", "patroni": "patroni", "etcd": "etcd",
            "haproxy": "haproxy"}.get(comm, comm)


def sample(topo: Topology) -> dict[int, tuple[str, float, int]]:
    """pid -> (component, cpu seconds, rss bytes) for every process inside the lab."""
    out: dict[int, tuple[str, float, int]] = {}
    for host in topo.hosts.values():
        for pid in netns.namespace_pids(netns.namespace_name(host.name)):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                comm = stat[stat.index("(") + 1:stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2:].split()
                cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
                rss = int(fields[21]) * 4096
            except (OSError, ValueError, IndexError):
                continue
            out[pid] = (component_of(host.name, comm), cpu, rss)
    return out


class Sampler(threading.Thread):
    def __init__(self, topo: Topology) -> None:
        super().__init__(daemon=True)
        self.topo = topo
        self.stop = threading.Event()
        self.first = sample(topo)
        self.last = self.first
        self.peak: dict[str, int] = {}

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.last = sample(self.topo)
            rss: dict[str, int] = {}
            for comp, _, r in self.last.values():
                rss[comp] = rss.get(comp, 0) + r
            for comp, r in rss.items():
                self.peak[comp] = max(self.peak.get(comp, 0), r)

    def cpu(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, (comp, cpu, _) in self.last.items():
            before = self.first.get(pid)
            out[comp] = out.get(comp, 0.0) + cpu - (before[1] if before else 0.0)
        return {k: round(v, 1) for k, v in sorted(out.items())}


def first_message_s(dsn: str, campaign: int) -> float | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM min(a.sent_at) - c.launched_at) FROM campaigns c "
            "JOIN attempts a ON a.campaign_id = c.id WHERE c.id = %s GROUP BY c.launched_at",
            (campaign,)).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def run_size(topo: Topology, api: NodeApi, size: int, timeout: float) -> dict[str, Any]:
    for host in topo.hosts_running("carriers"):
        request_json("POST", f"{carriers_control_url(topo, host)}/reset", {})
    sampler = Sampler(topo)
    sampler.start()
    t0 = time.monotonic()
    campaign = int(api.call("POST", "/campaigns", {"scenario": "demo", "population": size})["id"])
    launch_s = time.monotonic() - t0
    deadline = t0 + timeout
    dsn = app_dsn(topo, topo.datacenter_sites[0].name)
    # The campaign row, not the API's summary: that one aggregates every recipient of the
    # campaign, and asked every half second at 1,000,000 it cost PostgreSQL more than the
    # campaign's own writes (and the benchmark measured itself).
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() <= deadline:
            row = conn.execute("SELECT state FROM campaigns WHERE id = %s",
                               (campaign,)).fetchone()
            if row is not None and row[0] == "completed":
                break
            time.sleep(0.5)
    wall = time.monotonic() - t0
    sampler.stop.set()
    sampler.join()
    c = dict(api.call("GET", f"/campaigns/{campaign}"))
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT extract(epoch FROM completed_at - launched_at) FROM campaigns "
                           "WHERE id = %s", (campaign,)).fetchone()
    complete_s = float(row[0]) if row and row[0] is not None else None
    dups = sum(r["report"]["totals"]["duplicates"] for r in carriers_report(topo) if "report" in r)
    per_s = size / complete_s if complete_s else None
    return {
        "size": size, "campaign": campaign, "state": c["state"], "delivered": c["delivered"],
        "failed": c["failed"], "by_site": c["by_site"], "launch_api_s": round(launch_s, 2),
        "first_message_s": first_message_s(dsn, campaign), "complete_s": complete_s,
        "wall_s": round(wall, 1), "alerts_per_s": per_s,
        "alerts_per_hour": per_s * 3600 if per_s else None, "carrier_duplicates": dups,
        "cpu_s": sampler.cpu(), "peak_rss_mib": {k: round(v / 2**20) for k, v in
                                                  sorted(sampler.peak.items())},
    }


def per_alert_us(r: dict[str, Any]) -> dict[str, float]:
    """CPU µs per delivered alert for each component, and nodes + PostgreSQL."""
    done = r.get("delivered") or 0
    if not done:
        return {}
    us = {k: v / done * 1e6 for k, v in r["cpu_s"].items()}
    us["nodes+postgresql"] = us.get("alert nodes", 0.0) + us.get("postgresql", 0.0)
    return us


def reference_results(path: Path) -> dict[int, dict[str, Any]]:
    """An earlier lab run's figures by campaign size (the reference printed beside)."""
    data = json.loads(path.read_text())
    return {int(r["size"]): {"us": per_alert_us(r), "aph": r.get("alerts_per_hour"),
                             "first": r.get("first_message_s")} for r in data["results"]}


def launch_only(topo: Topology, api: NodeApi, size: int, timeout: float) -> dict[str, Any]:
    """A launch of ``size`` recipients: first message, when every recipient was written, peak
    memory per component; then the campaign is cancelled (dispatching millions to the end on
    this lab takes longer than a run is worth)."""
    sampler = Sampler(topo)
    sampler.start()
    t0 = time.time()
    campaign = int(api.call("POST", "/campaigns", {"scenario": "demo", "population": size})["id"])
    api_s = time.time() - t0
    dsn = app_dsn(topo, topo.datacenter_sites[0].name)
    written = None
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT launch_state, recipients FROM campaigns WHERE id = %s",
                               (campaign,)).fetchone()
            if row is not None and row[0] != "writing":
                written = time.time() - t0
                break
            time.sleep(0.2)
        state = row[0] if row else None
        count = int(row[1]) if row else 0
    api.call("POST", f"/campaigns/{campaign}/cancel", {})
    sampler.stop.set()
    sampler.join()
    return {"size": size, "campaign": campaign, "launch_only": True, "api_s": round(api_s, 3),
            "first_message_s": first_message_s(dsn, campaign), "written_s": written,
            "launch_state": state, "recipients_written": count, "cpu_s": sampler.cpu(),
            "peak_rss_mib": {k: round(v / 2**20) for k, v in sorted(sampler.peak.items())}}


def lab_main(args: argparse.Namespace) -> int:
    """The lab mode: the lab's Lab API is changing, so everything lab-specific is here."""
    if any(not 1 <= s <= 2_000_000 for s in args.sizes):
        raise SystemExit("--sizes must be between 1 and 2,000,000 on the lab (--big for a "
                         "launch only, up to 9,999,999)")
    with tempfile.TemporaryDirectory() as tmp:
        data = yaml.safe_load((args.inventory / "hosts.yml").read_text())
        data["all"]["vars"]["tenir_node_carrier_rate_per_s"] = args.rate
        inv = Path(tmp) / "hosts.yml"
        inv.write_text(yaml.safe_dump(data, sort_keys=False))
        topo = load_topology(inv)
        Lab(topo, say=lambda s: None).up(timeout=300)
    view = patroni_view(topo)
    print(f"lab up; primary {view.primary if view else '?'}; synchronous standby "
          f"{view.sync_standby if view else '?'}; node rate limit {args.rate}/s per adapter",
          flush=True)
    api = NodeApi(topo, operator_token())
    raw = raw_update_limit(owner_dsn(topo, topo.datacenter_sites[0].name))
    print(f"raw limit: {raw:,.0f} bulk row updates/s through HAProxy, synchronous replication",
          flush=True)
    results = []
    for size in args.sizes:
        r = run_size(topo, api, size, args.timeout)
        results.append(r)
        print(f"  {size:>9,} recipients: {r['state']}, {r['alerts_per_s'] or 0:,.0f} alerts/s, "
              f"first message {r['first_message_s']:.2f} s, complete {r['complete_s']} s, "
              f"duplicates {r['carrier_duplicates']}", flush=True)
    big = []
    for size in args.big:
        r = launch_only(topo, api, size, args.timeout)
        big.append(r)
        print(f"  {size:>9,} recipients (launch only): first message {r['first_message_s']} s, "
              f"written {r['written_s']} s ({r['launch_state']}, {r['recipients_written']:,}), "
              f"peak RSS MiB {r['peak_rss_mib']}", flush=True)
    print("\nEnd-to-end throughput (both sites dispatching, synchronous replication)")
    print(f"{'recipients':>10} {'alerts/hour':>12} {'x ref 410k/h':>12} {'x raw limit':>11} "
          f"{'first msg s':>11} {'complete s':>10}")
    for r in results:
        aph = r["alerts_per_hour"] or 0
        print(f"{r['size']:>10,} {aph:>12,.0f} {aph / REFERENCE_PER_HOUR:>12.1f} "
              f"{(r['alerts_per_s'] or 0) / raw:>11.3f} {r['first_message_s'] or 0:>11.2f} "
              f"{r['complete_s'] or 0:>10.1f}")
    for r in results:
        print(f"  {r['size']:,}: CPU s {r['cpu_s']}; peak RSS MiB (sum per component) "
              f"{r['peak_rss_mib']}")
    print("\nCPU µs per delivered alert" + (f", beside {args.reference.name} (ratio new/old)"
                                          if args.reference else ""))
    before = reference_results(args.reference) if args.reference else {}
    for r in results:
        old = before.get(r["size"])
        print(f"  {r['size']:,}: " + "; ".join(
            f"{k} {v:.0f}" + (f" (was {old['us'][k]:.0f}, x{v / old['us'][k]:.2f})"
                              if old and old["us"].get(k) else "")
            for k, v in per_alert_us(r).items()))
        if old and old["aph"] and r["alerts_per_hour"]:
            print(f"    alerts/hour x{r['alerts_per_hour'] / old['aph']:.2f} "
                  f"({r['alerts_per_hour']:,.0f} against {old['aph']:,.0f}); first message "
                  f"{r['first_message_s'] or 0:.2f} s against {old['first'] or 0:.2f} s")
    out = REPO / "bench" / "results" / f"campaign_throughput-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"benchmark": "campaign_throughput", "reference_per_hour":
                               REFERENCE_PER_HOUR, "raw_updates_per_s": raw,
                               "node_rate_per_s": args.rate, "results": results,
                               "launch_only": big}, indent=2))
    print(f"results: {out.relative_to(REPO)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("loopback", "lab"), default="loopback",
                        help="loopback (default): every process on 127.0.0.1; lab: the lab")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--big", type=int, nargs="*", default=[],
                        help="launch-only sizes, e.g. --big 5000000")
    parser.add_argument("--rate", type=int, default=3000,
                        help="per-adapter rate limit of each node, messages/s (default 3000)")
    parser.add_argument("--nodes", type=int, default=4, help="alert nodes (loopback)")
    parser.add_argument("--baseline", default="chaos-core",
                        help="git ref measured beside, in the same run (loopback)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per campaign, seconds")
    parser.add_argument("--inventory", type=Path, default=REPO / "inventories" / "lab")
    parser.add_argument("--reference", type=Path, default=LAB_REFERENCE,
                        help="lab mode: an earlier run's JSON printed beside, as ratios")
    args = parser.parse_args()
    if any(not 1 <= s <= 9_999_999 for s in args.sizes + args.big):
        parser.error("sizes must be between 1 and 9,999,999")
    return lab_main(args) if args.mode == "lab" else loopback_main(args)


if __name__ == "__main__":
    sys.exit(main())
