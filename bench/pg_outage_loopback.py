"""Resume after a PostgreSQL failover, from the carriers' side, on loopback (``tests/loopback``):
the checkout under test (outcomes journaled, a reserve claimed ahead) beside a baseline checkout
(default: the last commit without the journal) in the same run, on the same machine.

Each run: four alert nodes (a 45 s batch lease, as the lab), a carrier simulator per site, a
campaign of ``--population`` (SMS, e-mail fallback); once 1,000 recipients are done PostgreSQL
is stopped as a crash does and started again ``--outage`` seconds later (20 s: what a Patroni
failover costs the lab). Measured from the fault:

* first submission: the first message a carrier received after it (the simulators' logs);
* longest pause: the longest stretch without any submission, from the fault to the last
  submission of the campaign, and when it ended (sending resumed): ``chaos.resume``;
* first outcome recorded: the first outcome write the database accepted after the fault (the
  claim log's time);
* PostgreSQL back: when it accepted connections again; complete: the campaign completed;
* duplicates: submissions of a reference beyond its first (no node fails here: 0 expected).

Prints median / max per variant side by side, the ratio of the longest pauses, and saves JSON
under bench/results/. About 2.5 minutes per run on two cores. Not the lab: no Patroni, no
HAProxy, no synchronous standby; the lab's figure is ``make bench-resume``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support import save_results  # noqa: E402
from chaos.resume import longest_pause  # noqa: E402
from tests.loopback.cluster import LoopbackCluster, checkout  # noqa: E402

BASELINE = "ad6f8c6"  # lab-machines before the journal: survivors stop once their batches end
FAULT_AFTER = 1_000
MEASURES = ("first_submit_s", "pause_s", "resumed_s", "first_outcome_s", "pg_back_s",
            "complete_s", "duplicates")
LABELS = {"first_submit_s": "first submission", "pause_s": "longest pause",
          "resumed_s": "sending resumed", "first_outcome_s": "first outcome recorded",
          "pg_back_s": "PostgreSQL back", "complete_s": "campaign complete",
          "duplicates": "duplicates"}


def done_count(dsn: str, campaign: int) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM recipients WHERE campaign_id = %s AND"
                           " state <> 'pending'", (campaign,)).fetchone()
    return int(row[0]) if row else 0


def one_run(code: Path, population: int, outage: float, rate: float) -> dict[str, Any]:
    with LoopbackCluster(nodes=4, code=code, rate_per_s=rate, lease_s=45.0) as lc:
        cursors = lc.reset_sims()
        campaign = lc.launch(population)
        deadline = time.monotonic() + 120
        while done_count(lc.dsn, campaign) < FAULT_AFTER and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.time()
        lc.stop_pg()
        time.sleep(max(0.0, outage - (time.time() - t0)))
        lc.start_pg_again()
        back = time.time() - t0
        row = lc.wait_done(campaign, 600.0)
        subs = lc.submissions(cursors)
        with psycopg.connect(lc.dsn) as conn:
            first = conn.execute("SELECT extract(epoch FROM min(at)) FROM claim_log WHERE"
                                 " kind = 'write' AND at > to_timestamp(%s)", (t0,)).fetchone()
            pending = conn.execute("SELECT count(*) FROM recipients WHERE campaign_id = %s AND"
                                   " state = 'pending'", (campaign,)).fetchone()
    times = [float(s["at"]) for s in subs]
    after = [t for t in times if t > t0]
    pause = longest_pause(times, t0, max(after, default=t0))
    counts = Counter(f"{s['channel']}|{s['reference']}" for s in subs)
    return {"first_submit_s": min(after) - t0 if after else None,
            "pause_s": round(pause.seconds, 3), "resumed_s": round(pause.ended_s, 3),
            "first_outcome_s": float(first[0]) - t0 if first and first[0] is not None else None,
            "pg_back_s": round(back, 3),
            "complete_s": (row["completed_at"] - t0) if row["completed_at"] else None,
            "duplicates": sum(n - 1 for n in counts.values()),
            "pending_at_end": int(pending[0]) if pending else None}


def stats(values: list[Any]) -> dict[str, float | None]:
    got = [float(v) for v in values if v is not None]
    return {"median": round(statistics.median(got), 2) if got else None,
            "max": round(max(got), 2) if got else None, "n": len(got)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--outage", type=float, default=20.0, help="seconds PostgreSQL is down")
    parser.add_argument("--population", type=int, default=24_000)
    parser.add_argument("--rate", type=float, default=150.0, help="per node and carrier, /s")
    parser.add_argument("--baseline", default=BASELINE,
                        help=f"git ref measured beside (default {BASELINE}, before the journal)")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be between 1 and 20")
    variants: dict[str, list[dict[str, Any]]] = {}

    def measure(name: str, code: Path) -> None:
        variants[name] = []
        for i in range(args.runs):
            r = one_run(code, args.population, args.outage, args.rate)
            variants[name].append(r)
            print(f"  {name} #{i + 1}: " + ", ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()),
                flush=True)

    if not args.no_baseline:
        with checkout(args.baseline) as base:
            measure(f"baseline {args.baseline}", base)
    measure("journal (this checkout)", REPO)
    summary = {name: {k: stats([r.get(k) for r in runs]) for k in MEASURES}
               for name, runs in variants.items()}
    names = list(summary)
    print(f"\nPostgreSQL down {args.outage:g} s mid-campaign, loopback, 4 nodes, {args.runs} runs:"
          " seconds from the fault, median / max")
    print(f"{'':<24}" + "".join(f"{n[:24]:>26}" for n in names))
    for k in MEASURES:
        cells = "".join(f"{str(summary[n][k]['median']) + ' / ' + str(summary[n][k]['max']):>26}"
                        for n in names)
        print(f"{LABELS[k]:<24}{cells}")
    if len(names) == 2:
        base, new = (summary[n]["pause_s"]["median"] for n in names)
        if base and new:
            print(f"longest pause, baseline / journal: {base / new:.0f}x")
    save_results("pg_outage_loopback", {"benchmark": "pg_outage_loopback", "runs": args.runs,
                                        "outage_s": args.outage, "population": args.population,
                                        "rate_per_node": args.rate, "summary": summary,
                                        "raw": variants})
    return 0


if __name__ == "__main__":
    sys.exit(main())
