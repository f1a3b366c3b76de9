"""Campaign store throughput: record_outcomes against a raw unnest insert, and a big launch.

For each flush size F it launches a population campaign of N recipients in batches of F, claims
every batch and times ``record_outcomes`` of one flush of F final outcomes per batch (the fenced
path: batch lock, attempts upsert, recipients update). In the same run and on the same server
it times the same column arrays inserted with a plain ``INSERT ... SELECT unnest(...)`` into a
table without index or constraint, one transaction per flush: the floor. It prints both rates
and their ratio, then times ``launch_campaign`` of a large population (one transaction).

Without --dsn it starts a throwaway PostgreSQL 15 on 127.0.0.1 with the durable defaults (fsync
and synchronous_commit on) and stops it at the end. Results are saved as JSON in bench/results/.

Usage: .venv/bin/python bench/store_outcomes.py [--outcomes 100000] [--flush 1000,10000]
                                                [--launch 1000000] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support import bench_database, save_results  # noqa: E402
from replication.migrate import migrate  # noqa: E402
from replication.store import PgCampaignStore  # noqa: E402
from replication.store_api import ChannelStep, Outcome, ScenarioIn  # noqa: E402
from replication.store_codec import pack_outcomes  # noqa: E402

SITES = ("paris", "marseille")
RAW_TABLE = """
CREATE TABLE IF NOT EXISTS bench_raw (
    reference text, recipient bigint, channel text, carrier text, state text, site text,
    step int, attempt int, carrier_message_id text, detail text, at timestamptz)"""
RAW_INSERT = """
INSERT INTO bench_raw
SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[],
                     %s::int[], %s::int[], %s::text[], %s::text[], %s::timestamptz[])"""


def outcomes_for(campaign_id: int, recipient_ids: list[int]) -> list[Outcome]:
    return [Outcome(recipient_id=r, channel="sms", carrier="sim-sms",
                    reference=f"{campaign_id}:{r}:sms:0", state="delivered", step=0, attempt=0,
                    final=True, site=SITES[r % 2], carrier_message_id=f"m{r}")
            for r in recipient_ids]


async def bench_flush(store: PgCampaignStore, dsn: str, total: int, flush: int) -> dict[str, Any]:
    cid = await store.launch_campaign("bench", "bench", population=total, batch_size=flush)
    claims = []
    while (b := await store.claim_batch("bench-node", 600)) is not None:
        if b.campaign_id == cid:
            claims.append(b)
    flushes = [(b, outcomes_for(cid, [r.id for r in b.recipients])) for b in claims]
    n = sum(len(o) for _, o in flushes)

    t0 = time.perf_counter()
    for b, outs in flushes:
        await store.record_outcomes(b.id, b.epoch, "bench-node", outs)
    store_s = time.perf_counter() - t0

    # The floor: the same arrays, a plain insert into a table without index or constraint.
    packed = [pack_outcomes(outs).attempts for _, outs in flushes]
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(RAW_TABLE)
        await conn.execute("TRUNCATE bench_raw")
        t0 = time.perf_counter()
        for cols in packed:
            async with conn.transaction():
                await conn.execute(RAW_INSERT, cols)
        raw_s = time.perf_counter() - t0
    return {"flush": flush, "outcomes": n, "store_s": store_s, "store_per_s": n / store_s,
            "raw_s": raw_s, "raw_per_s": n / raw_s, "ratio": (n / store_s) / (n / raw_s)}


async def bench_launch(store: PgCampaignStore, population: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    cid = await store.launch_campaign("bench", "bench", population=population, batch_size=100)
    launch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = await store.campaign_summary(cid)
    summary_s = time.perf_counter() - t0
    assert summary.recipients == population and summary.pending == population
    return {"population": population, "launch_s": launch_s, "per_s": population / launch_s,
            "summary_s": summary_s}


async def run(dsn: str, total: int, flushes: list[int], launch: int) -> dict[str, Any]:
    await migrate(dsn)
    store = await PgCampaignStore.open(dsn, min_size=1, max_size=4)
    try:
        try:
            await store.get_scenario("bench")
        except Exception:
            await store.create_scenario(ScenarioIn("bench", (ChannelStep("sms", {"fr": "x"}),)))
        rows = [await bench_flush(store, dsn, total, f) for f in flushes]
        launched = await bench_launch(store, launch) if launch else None
    finally:
        await store.close()
    return {"flushes": rows, "launch": launched}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outcomes", type=int, default=100_000)
    ap.add_argument("--flush", default="1000,10000", help="flush sizes, comma-separated")
    ap.add_argument("--launch", type=int, default=1_000_000, help="0 to skip")
    ap.add_argument("--dsn", help="an existing database (default: a throwaway server)")
    args = ap.parse_args()
    flushes = [int(f) for f in args.flush.split(",")]
    with bench_database(args.dsn) as (dsn, where):
        result = asyncio.run(run(dsn, args.outcomes, flushes, args.launch))
    print(f"record_outcomes, {args.outcomes} final outcomes, one call per flush ({where}):")
    print(f"{'flush':>7} {'store outcomes/s':>17} {'raw unnest rows/s':>18} {'store/raw':>10}")
    for r in result["flushes"]:
        print(f"{r['flush']:>7} {r['store_per_s']:>17,.0f} {r['raw_per_s']:>18,.0f} "
              f"{r['ratio']:>10.2f}")
    if result["launch"]:
        la = result["launch"]
        print(f"launch_campaign population={la['population']:,}: {la['launch_s']:.2f} s "
              f"({la['per_s']:,.0f} recipients/s, one transaction); "
              f"campaign_summary {la['summary_s'] * 1000:.0f} ms")
    save_results("store_outcomes", {"args": vars(args), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
