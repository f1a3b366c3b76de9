"""The continuity ledger's cost: appends per second, alone and from concurrent appenders,
beside plain INSERTs into an unchained table in the same run (the ratio is the chain's price:
the trigger's row lock on ``ledger_head`` and the hash), then the offline verification of a
bundle of 100,000 entries beside hashing the same bytes (the floor of any verifier).

Without --dsn it starts a throwaway PostgreSQL 15 on 127.0.0.1 with the durable defaults (fsync
and synchronous_commit on) and stops it at the end. Results are saved as JSON in bench/results/.

Usage: .venv/bin/python bench/ledger.py [--appends 2000] [--writers 4] [--verify 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support import bench_database, save_results  # noqa: E402
from failover.evidence import bundle as bundle_mod  # noqa: E402
from failover.evidence.entry import event_payload  # noqa: E402
from failover.evidence.pg_ledger import PgLedger  # noqa: E402
from failover.evidence.verify import verify_bundle  # noqa: E402
from replication.migrate import migrate  # noqa: E402
from replication.store import PgCampaignStore  # noqa: E402

PLAIN = ("CREATE TABLE IF NOT EXISTS bench_plain (id bigserial PRIMARY KEY, "
         "at timestamptz NOT NULL DEFAULT clock_timestamp(), payload bytea NOT NULL)")


def payload(i: int) -> bytes:
    return event_payload("watchdog.move", f"moved {i % 7} batches of paris-node{i % 2 + 1}",
                         actor="node:marseille-node1", node="marseille-node1", site="marseille",
                         details={"moved": {"paris-node1": i % 7}, "i": i})


async def _appends(dsn: str, n: int, writers: int, chained: bool) -> float:
    stores = [await PgCampaignStore.open(dsn, min_size=1, max_size=1) for _ in range(writers)]
    sql = ("INSERT INTO ledger (payload) VALUES (%s)" if chained
           else "INSERT INTO bench_plain (payload) VALUES (%s)")

    async def one(store: PgCampaignStore, k: int) -> None:
        for i in range(n // writers):
            async with store.pool.connection() as conn, conn.transaction():
                await conn.execute(sql, (payload(k * n + i),))

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(s, k) for k, s in enumerate(stores)))
        return (n // writers * writers) / (time.perf_counter() - t0)
    finally:
        for s in stores:
            await s.close()


async def bench_appends(dsn: str, n: int, writers: int) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(PLAIN)
    rows = []
    for w in (1, writers):
        chained = await _appends(dsn, n, w, True)
        plain = await _appends(dsn, n, w, False)
        rows.append({"writers": w, "appends": n, "ledger_per_s": chained, "plain_per_s": plain,
                     "ratio": chained / plain})
    return rows


async def bench_verify(dsn: str, n: int) -> dict[str, Any]:
    from tests.evidence_kit import ORIGIN, make_kit

    with psycopg.connect(dsn, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM ledger").fetchone()
        missing = n - int(have[0] if have else 0)
        if missing > 0:
            conn.execute(
                "INSERT INTO ledger (payload) SELECT convert_to(json_build_object('kind',"
                " 'watchdog.move', 'actor', 'node:bench', 'node', 'bench', 'site', 'paris',"
                " 'sentence', 'moved ' || g || ' batches', 'details', json_build_object('i', g)"
                ")::text, 'UTF8') FROM generate_series(1, %s) g", (missing,))
    store = await PgCampaignStore.open(dsn, min_size=1, max_size=2)
    try:
        ledger = PgLedger(store.pool)
        with tempfile.TemporaryDirectory() as tmp:
            kit = make_kit(ledger, Path(tmp))
            await kit.checkpointer.announce_key()
            t0 = time.perf_counter()
            await kit.checkpointer.once()
            checkpoint_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            b = await bundle_mod.collect(ledger, origin=ORIGIN, keys=kit.vkeys, since=None,
                                         until=None)
            bundle_mod.write(b, Path(tmp) / "bundle")
            export_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            result = verify_bundle(bundle_mod.read(Path(tmp) / "bundle"), trusted=kit.vkeys)
            verify_s = time.perf_counter() - t0
            assert result.ok, result.problems
            t0 = time.perf_counter()
            for e in result.entries:
                hashlib.sha256(e.payload).digest()
            floor_s = time.perf_counter() - t0
            size = result.size
    finally:
        await store.close()
    return {"entries": size, "checkpoint_s": checkpoint_s, "export_s": export_s,
            "verify_s": verify_s, "sha256_only_s": floor_s, "ratio": verify_s / floor_s}


async def run(dsn: str, appends: int, writers: int, verify: int) -> dict[str, Any]:
    await migrate(dsn)
    return {"appends": await bench_appends(dsn, appends, writers),
            "verify": await bench_verify(dsn, verify) if verify else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--appends", type=int, default=2000)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--verify", type=int, default=100_000, help="0 to skip")
    ap.add_argument("--dsn", help="an existing database (default: a throwaway server)")
    args = ap.parse_args()
    with bench_database(args.dsn) as (dsn, where):
        result = asyncio.run(run(dsn, args.appends, args.writers, args.verify))
    print(f"ledger appends, one transaction each ({where}):")
    print(f"{'writers':>8} {'ledger appends/s':>17} {'plain INSERTs/s':>16} {'ledger/plain':>13}")
    for r in result["appends"]:
        print(f"{r['writers']:>8} {r['ledger_per_s']:>17,.0f} {r['plain_per_s']:>16,.0f} "
              f"{r['ratio']:>13.2f}")
    v = result["verify"]
    if v:
        print(f"bundle of {v['entries']:,} entries: checkpoint {v['checkpoint_s']:.2f} s, "
              f"export {v['export_s']:.2f} s, verify {v['verify_s']:.2f} s offline "
              f"(SHA-256 of the payloads alone {v['sha256_only_s']:.3f} s; "
              f"verify/hash-only {v['ratio']:.0f})")
    save_results("ledger", {"args": vars(args), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
