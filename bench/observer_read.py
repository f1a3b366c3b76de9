"""The chaos store observer's read (``chaos.pg_observer.PgObserver.read``) on a database that
earlier runs filled: keeping to the run's campaign through the primary key's range of its
references, beside scanning every attempt (the reference). The read before a fault bounds the
window the rpo checker leaves uncovered (``rpo_window_s``, 0.5 s in the scenarios).

    .venv/bin/python bench/observer_read.py [--attempts 1400000] [--dsn DSN]

A throwaway PostgreSQL (durable defaults) unless ``--dsn``; earlier runs' attempts are inserted
as 20,000 per campaign (the matrix's 69 runs of 20,000 recipients make 1.4 million).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support import bench_database, save_results
from chaos.history import History
from chaos.pg_observer import PgObserver
from replication.migrate import migrate

READS = 7


def fill(dsn: str, attempts: int) -> int:
    """Earlier runs' attempts, 20,000 a campaign; returns a campaign id in the middle."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO attempts (reference, campaign_id, batch_id, recipient_id, channel,"
            " carrier, state, node, site, epoch, step, attempt, sent_at, updated_at)"
            " SELECT (g / 20000)::text || ':' || g || ':sms:0.0', g / 20000, g / 100, g, 'sms',"
            " 'sim', 'delivered', 'paris-node1', 'paris', 1, 0, 0, now(), now()"
            " FROM generate_series(1, %s) g", (attempts,))
        conn.execute("VACUUM ANALYZE attempts")
    return attempts // 40000


async def reads(dsn: str, follow: int | None) -> list[float]:
    h = History()
    if follow is not None:
        h.add("workload:0", "ok", "launch", {"campaign": follow, "recipients": 20000})
    out = []
    async with PgObserver(dsn, h) as obs:
        await obs.skip_existing()
        for _ in range(READS):
            began = time.perf_counter()
            await obs.read()
            out.append(time.perf_counter() - began)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attempts", type=int, default=1_400_000)
    p.add_argument("--dsn", default=None)
    args = p.parse_args()
    with bench_database(args.dsn) as (dsn, what):
        asyncio.run(migrate(dsn))
        campaign = fill(dsn, args.attempts)
        scan = asyncio.run(reads(dsn, None))
        followed = asyncio.run(reads(dsn, campaign))
    med_scan, med_followed = statistics.median(scan), statistics.median(followed)
    print(f"observer read, {args.attempts:,} attempts of earlier runs ({what}), median of "
          f"{READS}:")
    print(f"  every attempt scanned (reference)  {med_scan * 1000:8.1f} ms")
    print(f"  the run's campaign followed        {med_followed * 1000:8.1f} ms  "
          f"({med_scan / med_followed:.0f}x faster)")
    save_results("observer_read", {"attempts": args.attempts, "database": what,
                                   "scan_ms": [round(x * 1000, 2) for x in scan],
                                   "followed_ms": [round(x * 1000, 2) for x in followed]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
