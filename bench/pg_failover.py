"""PostgreSQL failover time in the lab when the primary's whole site is killed (SIGKILL).

For each timing profile (Patroni's defaults, ttl 30 / loop_wait 10 / retry_timeout 10, and the
lab's inventory timings) it runs N site kills: a writer commits rows through the surviving site's
HAProxy, every process of the primary's site is killed mid-writes, and we time the kill to the
first write that succeeds again; the lost site is then brought back before the next run. Prints
median and max per profile, their ratio, and saves JSON under bench/results/.

Usage (as root, with `make install` done): .venv/bin/python bench/pg_failover.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cluster.lab.access import owner_dsn  # noqa: E402
from cluster.lab.health import patroni_view  # noqa: E402
from cluster.lab.lab import Lab  # noqa: E402
from cluster.topology import Topology, load_topology  # noqa: E402
from failover.pg_takeover import TakeoverResult, measure_site_loss  # noqa: E402

PATRONI_DEFAULTS = {"patroni_ttl": 30, "patroni_loop_wait": 10, "patroni_retry_timeout": 10}


def profile_inventory(base: Path, overrides: dict[str, int], tmp: Path) -> Path:
    data = yaml.safe_load((base / "hosts.yml").read_text())
    data["all"]["vars"].update(overrides)
    out = tmp / "hosts.yml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def one_run(topo: Topology, lab: Lab) -> TakeoverResult:
    view = patroni_view(topo)
    assert view is not None and view.primary is not None, "no primary before the run"
    old = view.primary
    lost = topo.hosts[old].site
    survivor = next(s.name for s in topo.datacenter_sites if s.name != lost)

    def current() -> str | None:
        v = patroni_view(topo)
        return v.primary if v else None

    result = measure_site_loss(survivor_dsn=owner_dsn(topo, survivor),
                               kill_site=lambda: lab.kill_site(lost), killed_site=lost,
                               old_primary=old, current_primary=current, timeout=150)
    lab.up(timeout=240)  # bring the lost site back as the synchronous standby
    return result


def run_profile(name: str, topo: Topology, runs: int) -> dict[str, Any]:
    # A fresh lab per profile: Patroni's etcd lease keeps the TTL it was created with, so timings
    # changed at runtime would only apply from the leader's next lease.
    lab = Lab(topo, say=lambda s: None)
    lab.down()
    lab.up(timeout=240)
    t = topo.timings
    print(f"[{name}] ttl {t.ttl} / loop_wait {t.loop_wait} / retry_timeout {t.retry_timeout}:"
          f" {runs} runs", flush=True)
    results = []
    for i in range(runs):
        r = one_run(topo, lab)
        results.append(r)
        print(f"  run {i + 1}: {r.sentence()}", flush=True)
    seconds = [r.seconds_to_write for r in results if r.seconds_to_write is not None]
    return {
        "profile": name, "ttl": t.ttl, "loop_wait": t.loop_wait, "retry_timeout": t.retry_timeout,
        "runs": runs, "resumed": len(seconds),
        "seconds": [round(s, 2) for s in seconds],
        "median_s": round(statistics.median(seconds), 2) if seconds else None,
        "max_s": round(max(seconds), 2) if seconds else None,
        "lost_rows": sum(r.lost for r in results),
        "acknowledged_rows": sum(r.acknowledged for r in results),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="site kills per profile (default 5)")
    parser.add_argument("--inventory", type=Path, default=REPO / "inventories" / "lab")
    args = parser.parse_args()
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be between 1 and 50")
    with tempfile.TemporaryDirectory() as tmp:
        defaults_topo = load_topology(profile_inventory(args.inventory, PATRONI_DEFAULTS,
                                                        Path(tmp)))
        lab_topo = load_topology(args.inventory)
        started = time.time()
        profiles = [run_profile("patroni-defaults", defaults_topo, args.runs),
                    run_profile("tenir-lab", lab_topo, args.runs)]
    ref, ours = profiles
    ratio = (ref["median_s"] / ours["median_s"]) if ref["median_s"] and ours["median_s"] else None
    print("\nPostgreSQL failover after losing the primary's whole site (kill -9 of every process)")
    print(f"{'profile':<18} {'ttl/loop/retry':<15} {'runs':>4} {'median s':>9} {'max s':>7} "
          f"{'lost rows':>9}")
    for p in profiles:
        print(f"{p['profile']:<18} {p['ttl']}/{p['loop_wait']}/{p['retry_timeout']:<9} "
              f"{p['resumed']:>4} {p['median_s']!s:>9} {p['max_s']!s:>7} {p['lost_rows']:>9}")
    if ratio is not None:
        print(f"ratio (Patroni defaults median / tenir lab median): {ratio:.2f}x faster")
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"pg_failover-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"benchmark": "pg_failover", "started_at": started,
                               "profiles": profiles, "ratio_median": ratio}, indent=2))
    print(f"results: {out.relative_to(REPO)}")
    # Leave the lab on the inventory's own timings.
    Lab(lab_topo, say=lambda s: None).up(timeout=240)
    return 0


if __name__ == "__main__":
    sys.exit(main())
