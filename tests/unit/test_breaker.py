"""Circuit breakers of a node's carriers."""

from __future__ import annotations

import pytest

from nodes.breaker import Breaker

pytestmark = pytest.mark.unit


def test_breaker_opens_after_threshold_closes_on_success_and_half_opens_after_cooldown() -> None:
    now = [0.0]
    b = Breaker(threshold=3, cooldown_s=10.0, clock=lambda: now[0])
    assert [b.record(False) for _ in range(3)] == [False, False, True]
    assert b.is_open()
    now[0] = 10.0
    assert not b.is_open()  # half-open: one more failure reopens it
    assert b.record(False) is True and b.is_open()
    assert b.record(True) is False and not b.is_open()
