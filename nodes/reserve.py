"""Work claimed ahead: what a node holds beyond the batches it is sending, so that it can go on
sending while PostgreSQL fails over (no claim can be made then).

* :class:`SendSlots`: at most ``max_batches`` batches send at once; the others wait, under
  their renewed lease, and start in (campaign priority, claim order): a more urgent campaign
  claimed later starts before the reserve of a less urgent one.
* :class:`ClaimAhead`: how much to hold waiting: enough to keep sending for ``seconds`` at the
  rate this node finishes recipients (measured over the last ``window_s``), at most
  ``max_batches`` batches. The rate starts at zero, so a node claims ahead only once work
  flows, and every node's reserve grows with its own rate: a campaign's work is shared out as
  before, and each node ends its reserve at about the same time.

Bounds: a node that dies holds no more than its reserve (moved by the watchdog like any batch;
nothing of it was sent), and a node that dies during an outage has sent at most what it held
at its start (docs/failover-timings.md gives the arithmetic with the leases).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable


class SendSlots:
    """A semaphore whose waiters are served by key (lowest first), not by arrival."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("n: at least 1")
        self._free = n
        self._order = itertools.count()
        self._heap: list[tuple[tuple[int, int], int, asyncio.Future[None]]] = []

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._heap if not f.done())

    async def acquire(self, key: tuple[int, int]) -> None:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (key, next(self._order), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot as it was cancelled: pass it on
            raise

    def release(self) -> None:
        while self._heap:
            _, _, fut = heapq.heappop(self._heap)
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1


class ClaimAhead:
    def __init__(self, seconds: float, max_batches: int, window_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if seconds < 0 or max_batches < 0 or window_s <= 0:
            raise ValueError("seconds and max_batches must be >= 0, window_s > 0")
        self.seconds = seconds
        self.max_batches = max_batches
        self.window_s = window_s
        self.clock = clock
        self._done: deque[tuple[float, int]] = deque()  # (tenth of a second, recipients)
        self._first: float | None = None

    def note_done(self, recipients: int = 1) -> None:
        now = self.clock()
        if self._first is None:
            self._first = now
        tick = round(now, 1)
        if self._done and self._done[-1][0] == tick:
            self._done[-1] = (tick, self._done[-1][1] + recipients)
        else:
            self._done.append((tick, recipients))
        self._prune(now)

    def _prune(self, now: float) -> None:
        while self._done and self._done[0][0] < now - self.window_s:
            self._done.popleft()

    def rate(self) -> float:
        """Recipients finished per second over the window (or since the first, if later)."""
        if self._first is None:
            return 0.0
        now = self.clock()
        self._prune(now)
        span = min(self.window_s, max(now - self._first, 0.5))
        return sum(n for _, n in self._done) / span

    def target(self) -> float:
        """Recipients to hold waiting."""
        return self.rate() * self.seconds

    def wants_more(self, waiting_batches: int, waiting_recipients: int) -> bool:
        if self.seconds <= 0 or waiting_batches >= self.max_batches:
            return False
        return waiting_recipients < self.target()
