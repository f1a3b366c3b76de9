"""A bound on repeated log records from libraries that can be made to log once per attacker's
request or once per event-loop tick: asyncio's "socket.accept() out of system resource" (EMFILE),
aiohttp's "Error handling request" for every malformed request line.

:class:`RepeatLimit` lets through at most ``burst`` records per (logger, message template) in
each ``window_s``; the first record let through after some were dropped carries their count in
its ``suppressed`` field. Memory is bounded: at most ``max_keys`` templates are remembered.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FLOODING_LOGGERS = ("asyncio", "aiohttp.server", "aiohttp.internal", "aiohttp.web")


@dataclass
class _Window:
    started: float
    passed: int = 0
    dropped: int = 0


class RepeatLimit(logging.Filter):
    def __init__(self, burst: int = 5, window_s: float = 60.0, max_keys: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        if burst < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("burst, window_s and max_keys must be positive")
        self.burst = burst
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._windows: OrderedDict[tuple[str, str], _Window] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        key = (record.name, template[:200])
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window.started >= self.window_s:
            dropped = window.dropped if window is not None else 0
            window = _Window(started=now)
            self._windows[key] = window
            if dropped:
                record.suppressed = dropped
        self._windows.move_to_end(key)
        while len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)
        if window.passed >= self.burst:
            window.dropped += 1
            return False
        window.passed += 1
        return True


def limit_flooding_loggers(burst: int = 5, window_s: float = 60.0) -> RepeatLimit:
    """Install one :class:`RepeatLimit` on the loggers of :data:`FLOODING_LOGGERS`."""
    limit = RepeatLimit(burst, window_s)
    for name in FLOODING_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RepeatLimit)]:
            logger.removeFilter(old)
        logger.addFilter(limit)
    return limit
