"""Bounded waiting: every wait in tenir has a deadline and says what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    def __init__(self, what: str, timeout: float, last: str) -> None:
        super().__init__(f"gave up after {timeout:.0f} s waiting for {what}; last seen: {last}")
        self.what = what
        self.last = last


def wait_for(what: str, probe: Callable[[], tuple[bool, T, str]], timeout: float,
             interval: float = 0.2) -> T:
    """Call ``probe`` until it returns (True, value, _); return value. ``probe`` returns
    (done, value, description of what it saw); the description ends up in the timeout error."""
    deadline = time.monotonic() + timeout
    last = "nothing yet"
    while True:
        try:
            done, value, last = probe()
            if done:
                return value
        except Exception as exc:  # a probe that fails is a probe that says "not yet"
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise WaitTimeout(what, timeout, last)
        time.sleep(interval)
