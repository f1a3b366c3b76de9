"""The lease renewer ends when its batch is done, even if its cancellation is lost (on the lab
one renewer in about 10,000 went on renewing a finished batch for good)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from nodes.lease import BatchLease, keep_lease
from replication.store_api import ClaimedBatch, Scenario

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class Renewals:
    def __init__(self) -> None:
        self.calls = 0

    async def renew_batch(self, batch_id: int, epoch: int, node: str, lease_s: float) -> None:
        self.calls += 1


def batch() -> ClaimedBatch:
    return ClaimedBatch(id=7, campaign_id=1, epoch=1, node="paris-node1",
                        lease_until=datetime.now(UTC), scenario=Scenario("s", ()),
                        recipients=())


async def renewer(store: Renewals, done: asyncio.Event) -> asyncio.Task[None]:
    lease = BatchLease(3.0, asyncio.get_running_loop().time())  # renewed every 0.5 s
    extra: dict[str, Any] = {}
    return asyncio.create_task(keep_lease(store, batch(), lease, asyncio.Event(),  # type: ignore[arg-type]
                                          lambda: None, extra, done))


async def test_a_renewer_ends_once_its_batch_is_done_without_being_cancelled() -> None:
    store, done = Renewals(), asyncio.Event()
    task = await renewer(store, done)
    await asyncio.sleep(1.2)
    assert store.calls >= 2  # it renews while the batch is sent from
    done.set()  # and no cancel(): as if the cancellation had been lost
    async with asyncio.timeout(1.0):  # by its next renewal at the latest
        await task
    calls = store.calls
    await asyncio.sleep(0.7)
    assert store.calls == calls


async def test_a_cancelled_renewer_stops_renewing() -> None:
    store = Renewals()
    task = await renewer(store, asyncio.Event())
    await asyncio.sleep(0.7)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    calls = store.calls
    await asyncio.sleep(0.7)
    assert store.calls == calls
