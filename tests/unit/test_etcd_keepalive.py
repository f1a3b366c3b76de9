"""The etcd coordinator's keepalive, the only renewer of a node's membership: an error it did
not expect is said and retried (a dead renewer would leave the node fenced for good, answering
as ready), and a lease the server reports gone as an error is replaced like one reported with
a TTL of 0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest

from cluster.coordination.base import CoordinationSettings, MemberInfo
from cluster.coordination.etcd import EtcdCoordinator, _LeaseGone

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

SETTINGS = CoordinationSettings(endpoints=("127.0.0.1:9",), namespace="/t/", ttl=0.6,
                                retry_timeout=0.2)


async def test_an_unexpected_error_in_a_renewal_is_said_and_the_next_one_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    coord = EtcdCoordinator(SETTINGS)
    calls: list[str] = []

    async def renew() -> None:
        calls.append("renew")
        if len(calls) == 1:
            raise AttributeError("'NoneType' object has no attribute 'TTL'")

    coord._renew = renew  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="cluster.coordination.etcd"):
        task = asyncio.create_task(coord._keepalive_loop())
        for _ in range(40):
            if len(calls) >= 3 or task.done():
                break
            await asyncio.sleep(0.05)
        assert not task.done(), task.exception() if task.done() else None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(calls) >= 3
    assert "keepalive failed unexpectedly: AttributeError" in caplog.text


async def test_a_lease_reported_gone_as_an_error_is_replaced() -> None:
    coord = EtcdCoordinator(SETTINGS)
    coord._member = MemberInfo("n1", "paris", "10.0.0.1")
    coord._lease, coord._lease_acked, coord._published = 0x5, 1.0, True
    seen: list[Any] = []

    async def call(op: str, _fn: Any) -> Any:
        assert op == "keepalive"
        raise _LeaseGone("etcd keepalive: etcdserver: requested lease not found")

    async def publish() -> None:
        seen.append((coord._lease, coord._published))

    coord._call = call  # type: ignore[method-assign]
    coord._publish = publish  # type: ignore[method-assign]
    await coord._renew()
    assert seen == [(None, False)]  # a new lease is granted, the member put under it
