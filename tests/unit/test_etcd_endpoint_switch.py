"""A node cut from every etcd endpoint switches endpoints many times a second; the log says so
once per ``SWITCH_SAY_EVERY_S`` with the count since, not once per switch (some 15 lines a
second per caller before, seen in the journals of an isolated site's nodes). The endpoints
are loopback ports nothing listens on: each attempt is refused at once."""

from __future__ import annotations

import logging
import re
import socket
import time

import pytest

from cluster.coordination.base import CoordinationSettings, CoordinationUnavailable
from cluster.coordination.etcd import SWITCH_SAY_EVERY_S, EtcdCoordinator

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _fail_for(coord: EtcdCoordinator, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for _ in range(100):
        if time.monotonic() > deadline:
            return
        with pytest.raises(CoordinationUnavailable):
            await coord.get("x")


async def test_switches_are_said_once_per_period_with_their_count(
        caplog: pytest.LogCaptureFixture) -> None:
    endpoints = tuple(f"127.0.0.1:{_closed_port()}" for _ in range(3))
    coord = EtcdCoordinator(CoordinationSettings(endpoints=endpoints, namespace="/t/", ttl=6,
                                                 retry_timeout=0.5))
    try:
        with caplog.at_level(logging.INFO, logger="cluster.coordination.etcd"):
            await _fail_for(coord, 1.5)
            lines = [r.getMessage() for r in caplog.records if "switching" in r.getMessage()]
            assert len(lines) == 1, lines
            assert lines[0].endswith("(1 switch(es) since the last such line)")
            unsaid = coord._switches
            assert unsaid >= 5  # the switches did happen
            coord._switch_said -= SWITCH_SAY_EVERY_S  # the period is over
            await _fail_for(coord, 0.1)
            lines = [r.getMessage() for r in caplog.records if "switching" in r.getMessage()]
            assert len(lines) == 2, lines
            said = int(re.findall(r"\((\d+) switch", lines[1])[0])
            assert said > unsaid
    finally:
        await coord.close()
