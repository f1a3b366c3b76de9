"""The tracked task set (``nodes/tasks.py``) as the node's background loops use it: a task that
dies is logged and ``on_failure`` is called at once; one cancelled or ended normally is not a
failure; ``wait`` reaps without raising again what was said."""

from __future__ import annotations

import asyncio
import logging

import pytest

from nodes.tasks import TaskSet

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]
log = logging.getLogger("tests.tasks")


async def _dies() -> None:
    await asyncio.sleep(0.01)
    raise RuntimeError("peers table holds a None")


async def _ends() -> None:
    await asyncio.sleep(0.01)


async def test_a_task_that_dies_is_said_and_on_failure_runs_at_once(
        caplog: pytest.LogCaptureFixture) -> None:
    stops: list[str] = []
    stop, said = asyncio.Event(), asyncio.Event()

    def on_failure(name: str, exc: BaseException) -> None:
        stops.append(f"{name}: {exc}")
        said.set()

    loops = TaskSet("node-loops", log, on_failure=on_failure)
    loops.spawn(stop.wait(), name="watchdog")  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="tests.tasks"):
        loops.spawn(_dies(), name="store-health")
        await asyncio.wait_for(said.wait(), 1.0)
    assert stops == ["store-health: peers table holds a None"]  # before anything is reaped
    assert loops.failed == ["store-health"] and len(loops) == 1  # the watchdog still runs
    assert "task failed" in caplog.text
    stop.set()
    assert await asyncio.wait_for(loops.wait(), 1.0)  # does not raise
    assert len(loops) == 0 and loops.failed == ["store-health"]


async def test_tasks_cancelled_or_ended_are_not_failures() -> None:
    stops: list[str] = []
    loops = TaskSet("node-loops", log, on_failure=lambda name, _exc: stops.append(name))
    loops.spawn(_ends(), name="drill-schedule")
    assert await loops.wait(1.0)
    loops.spawn(asyncio.Event().wait(), name="channels")  # type: ignore[arg-type]
    await loops.close()
    assert stops == [] and loops.failed == []
