"""Losing the PostgreSQL primary's whole site, measured from the outside.

A writer commits one row per transaction through the surviving site's HAProxy and records the
ids that were acknowledged. The primary's site is killed in the middle of those writes. We measure
the seconds from the kill to the first write that succeeds again, check that the survivor became
primary, and that every acknowledged row is still there (RPO 0).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

PROBE_TABLE = "tenir_probe"  # literal in the statements below


@dataclass
class WriterLog:
    """Acknowledged ids, with when each successful write started and ended (monotonic)."""

    acked: list[int] = field(default_factory=list)
    successes: list[tuple[float, float]] = field(default_factory=list)
    failures: int = 0

    def first_success_started_after(self, t: float) -> float | None:
        return next((end for start, end in self.successes if start >= t), None)


@dataclass(frozen=True)
class TakeoverResult:
    killed_site: str
    old_primary: str
    new_primary: str | None
    seconds_to_write: float | None
    acknowledged: int
    lost: int
    failed_attempts: int

    def sentence(self) -> str:
        if self.seconds_to_write is None:
            return (f"killed site {self.killed_site}: writes did NOT resume "
                    f"(new primary {self.new_primary})")
        return (f"killed site {self.killed_site} (primary {self.old_primary}): "
                f"{self.new_primary} took over, writes resumed after "
                f"{self.seconds_to_write:.1f} s; {self.acknowledged} acknowledged rows, "
                f"{self.lost} lost")


def ensure_probe_table(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS tenir_probe "
                     "(id bigserial PRIMARY KEY, run text NOT NULL, "
                     "at timestamptz NOT NULL DEFAULT now())")


def _writer(dsn: str, run: str, log: WriterLog, stop: threading.Event,
            deadline: float) -> None:
    conn: psycopg.Connection[tuple[int]] | None = None
    while not stop.is_set() and time.monotonic() < deadline:
        began = time.monotonic()
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(dsn, autocommit=True, connect_timeout=1)
            row = conn.execute("INSERT INTO tenir_probe (run) VALUES (%s) RETURNING id",
                               (run,)).fetchone()
            assert row is not None
            log.acked.append(int(row[0]))
            log.successes.append((began, time.monotonic()))
        except psycopg.Error:
            log.failures += 1
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.1)
        time.sleep(0.02)
    if conn is not None:
        conn.close()


def _ids_present(dsn: str, run: str, timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
                return {int(r[0]) for r in conn.execute(
                    "SELECT id FROM tenir_probe WHERE run = %s", (run,))}
        except psycopg.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def measure_site_loss(
    *,
    survivor_dsn: str,
    kill_site: Callable[[], object],
    killed_site: str,
    old_primary: str,
    current_primary: Callable[[], str | None],
    timeout: float = 120.0,
    warmup: float = 1.0,
) -> TakeoverResult:
    """Kill a site mid-writes; wait (bounded) for writes through ``survivor_dsn`` to resume."""
    run = f"takeover-{time.time_ns()}"
    ensure_probe_table(survivor_dsn)
    log = WriterLog()
    stop = threading.Event()
    deadline = time.monotonic() + warmup + timeout
    thread = threading.Thread(target=_writer, args=(survivor_dsn, run, log, stop, deadline),
                              daemon=True)
    thread.start()
    time.sleep(warmup)
    kill_at = time.monotonic()
    kill_site()
    # Only a write that began once every process of the site was dead proves a takeover.
    killed = time.monotonic()
    while log.first_success_started_after(killed) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a few more acknowledged writes on the new primary
    stop.set()
    thread.join(timeout=10)
    resumed = log.first_success_started_after(killed)
    seconds = None if resumed is None else resumed - kill_at
    acked = set(log.acked)
    present = _ids_present(survivor_dsn, run, 30.0) if seconds is not None else set()
    return TakeoverResult(
        killed_site=killed_site, old_primary=old_primary, new_primary=current_primary(),
        seconds_to_write=seconds, acknowledged=len(acked),
        lost=len(acked - present) if seconds is not None else len(acked),
        failed_attempts=log.failures,
    )
