"""A drill's monitor that cannot open its collectors says why at once: the drill never runs
without its history and stop conditions (it once waited 30 s, then went on unmonitored)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from failover.drills.monitor import Monitor
from failover.drills.stops import StopJudge
from tests.unit.drills.support import small

pytestmark = pytest.mark.unit


def test_collectors_that_cannot_open_stop_the_start_with_their_reason() -> None:
    @contextlib.asynccontextmanager
    async def broken(history: Any) -> AsyncIterator[list[Any]]:
        raise ConnectionError("observer: PostgreSQL refused the connection")
        yield []

    drill = small("lose-witness")
    monitor = Monitor(None, "run-1", judge=StopJudge(drill.stop, 5),  # type: ignore[arg-type]
                      collectors=broken)
    began = time.monotonic()
    with pytest.raises(ConnectionError, match="refused the connection"):
        monitor.start()
    assert time.monotonic() - began < 5
    monitor.close()
