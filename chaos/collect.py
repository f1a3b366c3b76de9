"""Runs the collectors on a period, as one owned task: ``async with Collecting([...], 0.5):``
reads each collector every period while the block runs, and once more at exit (after the
block, so that the last reads follow the end of the run). A collector's exception is logged
(a warning naming it: a store failing over or a site without power makes reads fail for a while,
and the next read catches up) and the others go on; the task is always reaped.

``read_all`` is also the nemesis's barrier, called right before each fault while the periodic
task runs: reads are serialised (a lock), a collector is never read twice at once. The last
collector (the store observer: the age of its snapshot at the fault is the rpo checker's
window) is read again while its read took longer than ``FRESH_READ_S``, at most
``FRESH_RETRIES`` times: on a busy lab one read took 0.86 s once (the window is at most 0.5 s,
usually 0.01-0.03 s), and the read after a slow one is quick, having little new to fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol

log = logging.getLogger("tenir.chaos.collect")
FRESH_READ_S = 0.1
FRESH_RETRIES = 3


class Collector(Protocol):
    async def read(self) -> Any: ...


class Collecting:
    def __init__(self, collectors: Sequence[Collector], period_s: float = 0.5) -> None:
        if period_s <= 0:
            raise ValueError("period_s: must be > 0")
        self.collectors = list(collectors)
        self.period_s = period_s
        self.errors = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def read_all(self) -> None:
        async with self._lock:
            took = 0.0
            for c in self.collectors:
                took = await self._read(c)
            for _ in range(FRESH_RETRIES):  # none read: took is 0.0
                if took <= FRESH_READ_S:
                    break
                took = await self._read(self.collectors[-1])

    async def _read(self, c: Collector) -> float:
        """Read ``c``; how long it took (a failed read counts as quick: it is not retried)."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            await c.read()
        except Exception as exc:  # a collector down must not stop the others
            self.errors += 1
            log.warning("collector %s failed: %s: %s", type(c).__name__,
                        type(exc).__name__, str(exc)[:300],
                        extra={"event": "chaos_collector_error",
                               "collector": type(c).__name__})
            return 0.0
        return loop.time() - began

    async def _loop(self) -> None:
        while not self._stop.is_set():
            await self.read_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.period_s)

    async def __aenter__(self) -> Collecting:
        self._task = asyncio.create_task(self._loop(), name="chaos-collect")
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.read_all()
