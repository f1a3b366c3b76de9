"""Whether the campaign store answers this node's writes now, as its own writes see it.

The dispatcher (claims, finishes, releases) and every outcome buffer (fenced outcome writes)
report each write: begun, answered (recorded, or refused by the store: it answered), or failed
(no answer: connection refused or lost, a timeout). The store *lags* while the last write
failed with no answer since, or while a write has waited longer than the lag bound: on a
silent link a write hangs rather than fails. ``nodes/store_health.py`` probes the store on its
own connection every second for the membership; this is faster and needs no extra query,
because it is what the node's own work already does.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable


class StoreWatch:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._ids = itertools.count()
        self._pending: dict[int, float] = {}  # write -> when it began
        self._failing = False

    def begin(self) -> int:
        write = next(self._ids)
        self._pending[write] = self.clock()
        return write

    def answered(self, write: int) -> None:
        self._pending.pop(write, None)
        self._failing = False

    def failed(self, write: int) -> None:
        self._pending.pop(write, None)
        self._failing = True

    def lagging(self, bound_s: float) -> bool:
        if self._failing:
            return True
        oldest = next(iter(self._pending.values()), None)  # begun in order
        return oldest is not None and self.clock() - oldest > bound_s
