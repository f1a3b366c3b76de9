"""A node's background loops: one that dies is said at once and stops the node; one cancelled
or ended normally is not a failure; reaping one never raises again what was said."""

from __future__ import annotations

import asyncio
import logging

import pytest

from nodes.supervision import Supervisor

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


async def _dies() -> None:
    await asyncio.sleep(0.01)
    raise RuntimeError("peers table holds a None")


async def _ends() -> None:
    await asyncio.sleep(0.01)


async def _runs(stop: asyncio.Event) -> None:
    await stop.wait()


async def test_a_loop_that_dies_is_said_and_stops_the_node(
        caplog: pytest.LogCaptureFixture) -> None:
    stops: list[str] = []
    loops = Supervisor(lambda name, exc: stops.append(f"{name}: {exc}"), {"node": "n1"})
    stop = asyncio.Event()
    healthy = loops.start(_runs(stop), "watchdog")
    dying = loops.start(_dies(), "store-health")
    with caplog.at_level(logging.CRITICAL, logger="tenir.supervision"):
        await asyncio.wait_for(loops.reap(dying), 1.0)  # does not raise
    assert stops == ["store-health: peers table holds a None"]
    assert [(name, type(exc)) for name, exc in loops.failed] == [("store-health", RuntimeError)]
    assert "background loop store-health died: RuntimeError" in caplog.text
    assert not healthy.done()
    stop.set()
    await loops.reap(healthy)
    assert len(loops.failed) == 1


async def test_loops_cancelled_or_ended_are_not_failures() -> None:
    stops: list[str] = []
    loops = Supervisor(lambda name, _exc: stops.append(name))
    ended = loops.start(_ends(), "drill-schedule")
    cancelled = loops.start(_runs(asyncio.Event()), "channels")
    await asyncio.sleep(0.05)
    cancelled.cancel()
    await loops.reap(cancelled)
    await loops.reap(ended)
    await loops.reap(None)
    assert stops == [] and loops.failed == []
