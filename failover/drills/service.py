"""What a node serves about drills (``nodes/api/drills.py``): the ledger-kept book
(``book.py``), the abort lever (a coordination key the running drill watches), and the schedule
read back from the ledger, which the node also exports as metrics, refreshed every minute:

* ``tenir_drill_last_run_timestamp_seconds{drill}``: when its latest record was written
  (absent: never run);
* ``tenir_drill_overdue{drill}``: 1 when no drill of that kind completed within its interval;
* ``tenir_drill_interval_seconds{drill}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from failover.drills.book import DrillBook
from failover.drills.lever import AbortRequest
from failover.drills.schedule import DueState, LastRun, due_state
from failover.evidence.entry import Entry
from failover.evidence.ledger import Ledger

log = logging.getLogger("tenir.drill.service")
REFRESH_S = 60.0


class AbortLever(Protocol):
    async def request_abort(self, by: str, reason: str, run: str | None) -> AbortRequest: ...


class MetricsSink(Protocol):
    def set_drill(self, drill: str, last_run: float | None, overdue: bool,
                  interval_s: float) -> None: ...


def _last(entry: Entry | None) -> LastRun | None:
    if entry is None:
        return None
    details = entry.doc().get("details") or {}
    return LastRun(entry.at, str(details.get("outcome") or "unknown"),
                   str(details.get("record_id", "")))


async def schedule(ledger: Ledger, intervals: Mapping[str, float],
                   now: datetime | None = None) -> list[DueState]:
    now = now or datetime.now(UTC)
    out = []
    for kind, interval in sorted(intervals.items()):
        last = _last(await ledger.last_of_kind("drill.record", drill_type=kind))
        done = [r for r in [_last(await ledger.last_of_kind("drill.record", drill_type=kind,
                                                            outcome=o))
                            for o in ("passed", "failed")] if r is not None]
        completed = max(done, key=lambda r: r.at) if done else None
        out.append(due_state(kind, interval, last, completed, now))
    return out


@dataclass
class DrillService:
    book: DrillBook
    intervals: Mapping[str, float]
    lever: AbortLever | None = None

    async def schedule(self, now: datetime | None = None) -> list[DueState]:
        return await schedule(self.book.ledger, self.intervals, now)

    async def refresh(self, metrics: MetricsSink) -> None:
        for state in await self.schedule():
            last = state.last_run.at.timestamp() if state.last_run else None
            metrics.set_drill(state.kind, last, state.overdue, state.interval_s)

    async def run(self, metrics: MetricsSink, stop: asyncio.Event,
                  every_s: float = REFRESH_S, on_error: Callable[[Exception], None] | None = None
                  ) -> None:
        """Refresh the metrics until ``stop`` (the node owns and awaits this task)."""
        while not stop.is_set():
            try:
                await self.refresh(metrics)
            except Exception as exc:  # the database away: the next refresh tries again
                log.warning("drill schedule not refreshed: %s", exc)
                if on_error is not None:
                    on_error(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
