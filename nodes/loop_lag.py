"""How late the node's event loop runs. Everything of a node shares one loop (the API, the
dispatcher, the membership heartbeat), so a request that holds it holds the heartbeat too.

A task asks to wake every ``period_s`` and records how much later than asked it woke:

* ``tenir_event_loop_lag_max_seconds``: the worst lag over the last ``window_s`` (a minute), what
  an operator or a test reads after a suspect load;
* ``tenir_event_loop_stalls_total{over="0.1"|"1"}``: wakes later than 0.1 s and than 1 s, since
  the start (a membership of 5 s survives a 1 s stall; several in a row are a warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from nodes.metrics import Metrics

STALL_THRESHOLDS_S = (0.1, 1.0)


@dataclass
class LoopLag:
    metrics: Metrics
    period_s: float = 0.05
    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    # (when, lag) of wakes later than a millisecond within the window, oldest first, each lag
    # larger than every one after it (a wake later than the newer ones is dropped: it can
    # never be the worst again): the first is the worst, read in O(1) at each wake, where a
    # max over a minute of wakes cost a scan of 1,200 at each wake of a busy node
    _recent: deque[tuple[float, float]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.metrics.loop_lag_max.set(0.0)
        for threshold in STALL_THRESHOLDS_S:
            self.metrics.loop_stalls.inc(0.0, over=f"{threshold:g}")

    def record(self, lag_s: float) -> None:
        """One wake ``lag_s`` later than asked."""
        now = self.clock()
        if lag_s > 0.001:
            while self._recent and self._recent[-1][1] <= lag_s:
                self._recent.pop()
            self._recent.append((now, lag_s))
        while self._recent and self._recent[0][0] < now - self.window_s:
            self._recent.popleft()
        self.metrics.loop_lag_max.set(self.worst_s)
        for threshold in STALL_THRESHOLDS_S:
            if lag_s > threshold:
                self.metrics.loop_stalls.inc(over=f"{threshold:g}")

    @property
    def worst_s(self) -> float:
        """The worst lag within the window (what ``tenir_event_loop_lag_max_seconds`` shows)."""
        return self._recent[0][1] if self._recent else 0.0

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            asked = loop.time() + self.period_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.period_s)
            if stop.is_set():
                return
            self.record(max(0.0, loop.time() - asked))
