"""The event loop's lag as /metrics shows it: the worst over the last minute, and stalls counted
over 0.1 s and 1 s."""

from __future__ import annotations

import asyncio
import time

import pytest

from nodes.loop_lag import LoopLag
from nodes.metrics import Metrics

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_worst_lag_is_over_the_last_minute_and_stalls_are_counted() -> None:
    metrics, clock = Metrics(), Clock()
    lag = LoopLag(metrics, clock=clock)
    text = metrics.render()
    assert "tenir_event_loop_lag_max_seconds 0" in text
    assert 'tenir_event_loop_stalls_total{over="1"} 0' in text  # present before any stall
    lag.record(0.002)
    lag.record(1.5)
    clock.now += 30
    lag.record(0.2)
    assert metrics.loop_lag_max.value() == 1.5
    assert metrics.loop_stalls.value(over="0.1") == 2
    assert metrics.loop_stalls.value(over="1") == 1
    clock.now += 31  # the 1.5 s stall is now more than a minute old
    lag.record(0.0)
    assert metrics.loop_lag_max.value() == 0.2
    clock.now += 60
    lag.record(0.0)
    assert metrics.loop_lag_max.value() == 0.0 and lag.worst_s == 0.0
    assert metrics.loop_stalls.value(over="1") == 1  # a counter: since the start


@pytest.mark.asyncio
async def test_a_blocking_call_on_the_loop_shows_and_stop_ends_the_task() -> None:
    metrics, stop = Metrics(), asyncio.Event()
    lag = LoopLag(metrics, period_s=0.02)
    task = asyncio.create_task(lag.run(stop))
    await asyncio.sleep(0.1)
    assert metrics.loop_lag_max.value() < 0.1
    time.sleep(0.3)  # noqa: ASYNC251 - the point: what a quadratic regex once did, for 7 s
    await asyncio.sleep(0.1)
    assert 0.25 <= metrics.loop_lag_max.value() < 1.0
    assert metrics.loop_stalls.value(over="0.1") == 1
    stop.set()
    await asyncio.wait_for(task, 1.0)


def test_the_worst_lag_after_one_expires_is_the_worst_of_the_newer_ones() -> None:
    metrics, clock = Metrics(), Clock()
    lag = LoopLag(metrics, clock=clock)
    for step, seconds in ((0, 0.5), (10, 0.3), (10, 0.4), (10, 0.05)):
        clock.now += step
        lag.record(seconds)
    assert lag.worst_s == 0.5
    clock.now += 35  # the 0.5 s wake is now 65 s old; 0.3, 0.4 and 0.05 are 55, 45 and 35
    lag.record(0.0)
    assert lag.worst_s == 0.4
    clock.now += 20  # 0.4 is 65 s old now
    lag.record(0.0)
    assert lag.worst_s == 0.05
