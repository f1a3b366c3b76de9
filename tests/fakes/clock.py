"""Clocks a test moves by hand: :class:`Clock` for the in-memory store (``clock.now +=
timedelta(...)``), :class:`Monotonic` for what takes ``time.monotonic`` (``clock.now += 0.5``)."""

from __future__ import annotations

from datetime import UTC, datetime


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Monotonic:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now
