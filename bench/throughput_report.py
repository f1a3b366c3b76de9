"""The loopback mode of bench/campaign_throughput.py: runs the harness on the baseline checkout
and on this one, in the same run, and prints them side by side; JSON to bench/results/."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.throughput_loopback import REFERENCE_PER_HOUR, run_variant
from tests.loopback.cluster import REPO, checkout

COMPONENTS = ("alert nodes", "postgresql", "nodes+postgresql", "carrier simulators", "etcd")


def _commit(ref: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", "-C", str(cwd), "rev-parse", "--short", ref], check=True,
                          capture_output=True, text=True).stdout.strip()


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_side_by_side(variants: dict[str, dict[str, Any]]) -> None:
    names = list(variants)
    print("\nCampaign throughput on loopback, same machine, same run "
          "(no synchronous replication, no HAProxy)")
    print(f"{'recipients':>10} {'checkout':>22} {'alerts/hour':>12} {'x ref 410k':>10} "
          f"{'x raw PG':>8} {'first msg s':>11} {'complete s':>10} "
          + " ".join(f"{c[:16]:>16}" for c in COMPONENTS))
    sizes = [r["size"] for r in variants[names[-1]]["results"]]
    for size in sizes:
        for name in names:
            v = variants[name]
            r = next((x for x in v["results"] if x["size"] == size), None)
            if r is None:
                continue
            aph = r.get("alerts_per_hour")
            per_s = aph / 3600 if aph else None
            us = r.get("cpu_us_per_alert", {})
            done = (f"{'written ' + format(r['written_s'], '.1f'):>10}" if r["launch_only"]
                    else f"{_fmt(r.get('complete_s'), '.1f'):>10}")
            print(f"{size:>10,} {name:>22} {_fmt(aph, ',.0f'):>12} "
                  f"{_fmt(aph / REFERENCE_PER_HOUR if aph else None, '.1f'):>10} "
                  f"{_fmt(per_s / v['raw_updates_per_s'] if per_s else None, '.3f'):>8} "
                  f"{_fmt(r['first_message_s'], '.2f'):>11} {done} "
                  + " ".join(f"{_fmt(us.get(c), '.1f'):>16}" for c in COMPONENTS))
    print("CPU columns: µs of CPU per delivered alert (utime+stime of each process tree). "
          "'written': a launch-only size (the campaign is cancelled once written).")
    for name in names:
        print(f"  {name}: raw PostgreSQL {variants[name]['raw_updates_per_s']:,.0f} bulk row "
              "updates/s (unnest, 500 rows per transaction), same server")
    if len(names) == 2:
        base, new = (variants[n]["results"] for n in names)
        for b in base:
            n = next((x for x in new if x["size"] == b["size"]), None)
            if n is None or b["launch_only"] or not b.get("alerts_per_hour") \
                    or not n.get("alerts_per_hour"):
                continue
            bu = b["cpu_us_per_alert"]["nodes+postgresql"]
            nu = n["cpu_us_per_alert"]["nodes+postgresql"]
            speed = n["alerts_per_hour"] / b["alerts_per_hour"]
            print(f"  {b['size']:,}: alerts/hour x{speed:.2f}; nodes+PostgreSQL CPU per alert "
                  f"x{nu / bu:.2f} ({bu:.0f} -> {nu:.0f} µs)")
    for name in names:
        for r in variants[name]["results"]:
            print(f"  {name} {r['size']:,}: peak RSS MiB {r['peak_rss_mib']} "
                  "(PostgreSQL's counts shared buffers per backend)")


def loopback_main(args: argparse.Namespace) -> int:
    variants: dict[str, dict[str, Any]] = {}

    def say(line: str) -> None:
        print(line, flush=True)

    if not args.no_baseline:
        label = f"{args.baseline} {_commit(args.baseline)}"
        say(f"baseline {label}")
        with checkout(args.baseline) as code:
            variants[label] = run_variant(code, args.sizes, args.big, nodes=args.nodes,
                                          rate=args.rate, timeout=args.timeout, say=say)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], check=True,
                           capture_output=True, text=True).stdout.strip()
    label = f"HEAD {_commit('HEAD')}{'+dirty' if dirty else ''}"
    say(f"this checkout {label}")
    variants[label] = run_variant(REPO, args.sizes, args.big, nodes=args.nodes, rate=args.rate,
                                  timeout=args.timeout, say=say)
    print_side_by_side(variants)
    out = REPO / "bench" / "results" / \
        f"campaign_throughput-loopback-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"benchmark": "campaign_throughput", "mode": "loopback",
                               "reference_per_hour": REFERENCE_PER_HOUR, "nodes": args.nodes,
                               "node_rate_per_s": args.rate, "variants": variants}, indent=2))
    print(f"results: {out.relative_to(REPO)}")
    return 0
