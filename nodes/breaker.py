"""Per-channel circuit breakers of one node: after ``threshold`` consecutive failed sends on a
channel (refused, throttled, timed out), the channel is considered down at this node's site for
``cooldown_s``; one success closes it again.

While a breaker is open the node takes no new batch and hands back the batches it holds, so that
the nodes of the other site, whose carriers work, send them: work moves away from a failing
carrier instead of falling back, recipient by recipient, to a channel the scenario ranks lower.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Breaker:
    threshold: int = 20
    cooldown_s: float = 15.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    opened_count: int = 0

    def record(self, ok: bool) -> bool:
        """Record a send; returns True when this call opened the breaker."""
        if ok:
            self.failures = 0
            self.opened_at = None
            return False
        self.failures += 1
        if self.failures >= self.threshold and not self.is_open():
            self.opened_at = self.clock()
            self.opened_count += 1
            return True
        return False

    def is_open(self) -> bool:
        if self.opened_at is None:
            return False
        if self.clock() - self.opened_at >= self.cooldown_s:
            # half-open: let traffic try again; the next failures reopen it quickly
            self.opened_at = None
            self.failures = self.threshold - 1
            return False
        return True


@dataclass
class Breakers:
    threshold: int = 20
    cooldown_s: float = 15.0
    clock: Callable[[], float] = time.monotonic
    by_channel: dict[str, Breaker] = field(default_factory=dict)

    def of(self, channel: str) -> Breaker:
        if channel not in self.by_channel:
            self.by_channel[channel] = Breaker(self.threshold, self.cooldown_s, self.clock)
        return self.by_channel[channel]

    def open_channels(self) -> list[str]:
        return sorted(c for c, b in self.by_channel.items() if b.is_open())
