"""Where an alert node's CPU goes: a loopback campaign (``tests/loopback``: a throwaway
PostgreSQL with pg_stat_statements, one etcd, a carrier simulator per site, two nodes with the
lab's lease and reserve), one node sampled by py-spy, and PostgreSQL's statements.

Prints, per campaign size: the CPU µs per delivered alert of each component, PostgreSQL's top
statements (``throughput_loopback.pg_top_statements``: total ms, calls, ms per call), then the
node's functions by self time and by inclusive time (percent of its samples). Only samples
holding the GIL count (``--gil``): CPU spent in Python, not a C call waiting on a socket (a
statement's send looked like 9 % of the node without it). Keeps py-spy's raw stacks under
``--out``.

    .venv/bin/python bench/profile_node.py --sizes 20000,200000 [--nodes 4] [--code DIR] [--no-spy]

With 2 nodes (the default) the campaign runs at the carriers' rate limit and each send waits for
a token; with 4, two cores are CPU-bound as on the lab. On busy cores a thread preempted while
it holds the GIL is still sampled as holding it: the percentages rank places, and overstate
what a cut saves (a ``gather`` at 5 % of the samples was 2 % of the CPU). Measure a cut with
``bench/campaign_throughput.py``'s same-run A/B.

Root is not needed; py-spy needs ptrace (root, or ``kernel.yama.ptrace_scope`` 0). It is stopped
with SIGINT, the only way it writes its output while the process it samples lives on.
"""

from __future__ import annotations

import argparse
import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.throughput_loopback import pg_top_statements  # noqa: E402
from tests.loopback.cluster import LoopbackCluster  # noqa: E402
from tests.loopback.cpu import usage  # noqa: E402

PY_SPY = ROOT / ".venv" / "bin" / "py-spy"
LAB_NODE = {"claim_ahead_s": 25, "claim_ahead_max": 256}  # as inventories/lab
TOP = 25


def spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(PY_SPY), "record", "-p", str(pid), "-f", "raw", "-r", "100", "-o", str(out),
         "--nonblocking", "--subprocesses", "--gil"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(raw: Path) -> list[str]:
    """py-spy's raw output (``frame;frame;... count`` a line) as two rankings."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        k = int(count)
        total += k
        frames = stack.split(";")
        own[frames[-1]] += k
        for frame in set(frames):
            inclusive[frame] += k
    lines = [f"== {raw.name}: {total} samples", "self:"]
    lines += [f"  {k / total * 100:5.1f}%  {f[:140]}" for f, k in own.most_common(TOP)]
    lines.append("inclusive:")
    lines += [f"  {k / total * 100:5.1f}%  {f[:140]}" for f, k in inclusive.most_common(TOP)]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,200000", help="campaign sizes, comma-separated")
    ap.add_argument("--code", type=Path, default=ROOT, help="the checkout the nodes run")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "profile")
    ap.add_argument("--no-spy", action="store_true", help="figures only, no py-spy")
    ap.add_argument("--nodes", type=int, default=2,
                    help="alert nodes (4: CPU-bound on two cores, as the lab; 2: rate-bound)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    raws = []
    with LoopbackCluster(nodes=args.nodes, code=args.code, rate_per_s=3000, lease_s=45.0,
                         node_extra=LAB_NODE) as lc:
        for n in sizes:
            with psycopg.connect(lc.dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
            before = usage(lc.components())
            started = time.time()
            campaign = lc.launch(n)
            sampler = None
            if not args.no_spy:
                raw = args.out / f"node-{n}.raw"
                raws.append(raw)
                sampler = spy(lc.node_list[0].proc.pid, raw)
            row = lc.wait_done(campaign, 900)
            if sampler is not None:
                sampler.send_signal(signal.SIGINT)
                sampler.wait(60)
            after = usage(lc.components())
            wall = time.time() - started
            with psycopg.connect(lc.dsn) as conn:
                got = conn.execute(
                    "SELECT count(*) FROM recipients WHERE campaign_id = %s"
                    " AND state IN ('delivered', 'acknowledged')", (campaign,)).fetchone()
            delivered = int(got[0]) if got else 0
            print(f"== {n:,} recipients: {delivered:,} delivered in {wall:.1f} s "
                  f"({delivered / wall * 3600:,.0f}/h), campaign {row['state']}")
            for name in before:
                cpu = after[name].cpu_s - before[name].cpu_s
                print(f"  {name}: {cpu:.2f} s CPU, {cpu / max(delivered, 1) * 1e6:.0f} µs/alert")
            for st in pg_top_statements(lc, limit=14):
                print(f"  PG {st['total_ms']:>9,.0f} ms {st['calls']:>7} calls "
                      f"{st['total_ms'] / max(st['calls'], 1):>8.3f} ms/call  {st['query']}")
            sys.stdout.flush()
    for raw in raws:
        if raw.exists():
            print("\n".join(summarize(raw)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
