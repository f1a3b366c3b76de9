"""The campaign throughput benchmark on loopback (``tests/loopback``): a throwaway PostgreSQL
(pg_stat_statements on), one etcd, a carrier simulator per site and N alert nodes, all on
127.0.0.1, for the checkout under test and, in the same run, for a baseline checkout (the
parent branch by default) so that both are measured on the same machine at the same load.

Per campaign size: CPU µs per delivered alert for each component (from /proc: utime+stime of
each process tree, PostgreSQL's backends included), the first-message time (the API call to
the first submission in the simulators' logs), alerts per hour and their ratio to the
reference (410,000/h) and to the raw PostgreSQL rate measured on the same server in the same
run. ``launch_only`` sizes (5,000,000) measure the launch (first message, time until every
recipient is written, peak memory) and cancel the campaign: dispatching them to the end takes
longer than a run is worth here; the benchmark says so.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.loopback.cluster import LoopbackCluster
from tests.loopback.cpu import usage

REFERENCE_PER_HOUR = 410_000


def raw_update_limit(dsn: str, seconds: float = 10.0, rows: int = 200_000,
                     chunk: int = 500) -> float:
    """Bulk row updates per second (unnest, ``chunk`` rows per transaction): PostgreSQL's raw
    limit on this server, the denominator of the 'x raw' ratio."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw")
        conn.execute("CREATE TABLE bench_raw (id bigint PRIMARY KEY, state text, at timestamptz)"
                     " WITH (fillfactor = 80)")
        conn.execute("INSERT INTO bench_raw SELECT g, 'pending', NULL "
                     "FROM generate_series(1, %s) g", (rows,))
        done, start, next_id = 0, time.monotonic(), 1
        while time.monotonic() - start < seconds:
            ids = list(range(next_id, next_id + chunk))
            next_id = next_id + chunk if next_id + chunk <= rows else 1
            conn.execute("UPDATE bench_raw b SET state = u.state, at = now() "
                         "FROM unnest(%s::bigint[], %s::text[]) AS u(id, state) WHERE b.id = u.id",
                         (ids, ["delivered"] * chunk))
            done += chunk
        elapsed = time.monotonic() - start
        conn.execute("DROP TABLE bench_raw")
    return done / elapsed


class PeakRss(threading.Thread):
    """Samples the components' RSS every half second; ``peak`` per component."""

    def __init__(self, lc: LoopbackCluster) -> None:
        super().__init__(daemon=True)
        self.lc = lc
        self.stop = threading.Event()
        self.peak: dict[str, int] = {}

    def run(self) -> None:
        while not self.stop.wait(0.5):
            for name, u in usage(self.lc.components()).items():
                self.peak[name] = max(self.peak.get(name, 0), u.rss)


def _first_message(lc: LoopbackCluster, cursors: dict[str, int], t0: float,
                   timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        first = lc.first_submission(cursors)
        if first is not None:
            return first - t0
        time.sleep(0.02)
    return None


def _written_at(lc: LoopbackCluster, campaign: int, api_done: float, timeout: float) -> float:
    """When every recipient was written: the launch state of 0008, or the API's answer for a
    checkout that launches in one transaction."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(lc.dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            try:
                row = conn.execute("SELECT launch_state FROM campaigns WHERE id = %s",
                                   (campaign,)).fetchone()
            except psycopg.errors.UndefinedColumn:
                return api_done
            if row is not None and row[0] != "writing":
                return time.time()
            time.sleep(0.1)
    return float("nan")


def run_size(lc: LoopbackCluster, size: int, timeout: float, launch_only: bool) -> dict[str, Any]:
    cursors = lc.reset_sims()
    before = usage(lc.components())
    rss = PeakRss(lc)
    rss.start()
    t0 = time.time()
    campaign = lc.launch(size)
    api_done = time.time()
    first = _first_message(lc, cursors, t0, 120.0)
    out: dict[str, Any] = {"size": size, "campaign": campaign, "api_s": api_done - t0,
                           "first_message_s": first, "launch_only": launch_only}
    if launch_only:
        out["written_s"] = _written_at(lc, campaign, api_done, timeout) - t0
        lc.api("POST", f"/campaigns/{campaign}/cancel")
    else:
        row = lc.wait_done(campaign, timeout)
        out["state"] = row["state"]
        out["complete_s"] = (row["completed_at"] - t0) if row["completed_at"] else None
    after = usage(lc.components())
    rss.stop.set()
    rss.join()
    with psycopg.connect(lc.dsn) as conn:
        done = conn.execute(
            "SELECT count(*) FILTER (WHERE state IN ('delivered', 'acknowledged')),"
            " count(*) FILTER (WHERE state = 'failed') FROM recipients WHERE campaign_id = %s",
            (campaign,)).fetchone()
    assert done is not None
    out["delivered"], out["failed"] = int(done[0]), int(done[1])
    cpu = {k: after[k].cpu_s - before[k].cpu_s for k in before}
    out["cpu_s"] = {k: round(v, 2) for k, v in cpu.items()}
    out["peak_rss_mib"] = {k: round(v / 2**20) for k, v in rss.peak.items()}
    if not launch_only and out["delivered"]:
        out["cpu_us_per_alert"] = {k: round(v / out["delivered"] * 1e6, 1)
                                   for k, v in cpu.items()}
        out["cpu_us_per_alert"]["nodes+postgresql"] = round(
            out["cpu_us_per_alert"]["alert nodes"] + out["cpu_us_per_alert"]["postgresql"], 1)
        if out["complete_s"]:
            out["alerts_per_hour"] = out["delivered"] / out["complete_s"] * 3600
    return out


def pg_top_statements(lc: LoopbackCluster, limit: int = 8) -> list[dict[str, Any]]:
    with psycopg.connect(lc.dsn) as conn:
        rows = conn.execute(
            "SELECT calls, rows, round(total_exec_time::numeric, 1),"
            " left(regexp_replace(query, '\\s+', ' ', 'g'), 90) FROM pg_stat_statements"
            " ORDER BY total_exec_time DESC LIMIT %s", (limit,)).fetchall()
    return [{"calls": r[0], "rows": r[1], "total_ms": float(r[2]), "query": r[3]} for r in rows]


def run_variant(code: Path, sizes: list[int], big: list[int], *, nodes: int, rate: float,
                timeout: float, say: Any) -> dict[str, Any]:
    with LoopbackCluster(nodes=nodes, code=code, rate_per_s=rate) as lc:
        raw = raw_update_limit(lc.dsn)
        say(f"  {code}: {nodes} nodes up; raw PostgreSQL {raw:,.0f} bulk row updates/s")
        with psycopg.connect(lc.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_statements_reset()")
        results = []
        for size in sizes + big:
            r = run_size(lc, size, timeout, launch_only=size in big)
            end = (f"written {r['written_s']:.1f}" if r["launch_only"]
                   else f"complete {r.get('complete_s')}")
            say(f"    {size:>9,}: first message {r['first_message_s']}, {end} s, "
                f"CPU s {r['cpu_s']}")
            results.append(r)
        return {"raw_updates_per_s": raw, "results": results,
                "pg_top_statements": pg_top_statements(lc)}
