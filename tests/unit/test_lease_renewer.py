"""The lease renewers of a node: they renew on one tick, in one store call for every batch held
(``nodes/lease.Renewals``); a refused batch stops only its own renewer; a renewer ends when its
batch is done, even if its cancellation is lost (on the lab one renewer in about 10,000 went on
renewing a finished batch for good)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from nodes.lease import BatchLease, LeaseLost, Renewals, keep_lease
from replication.store_api import ClaimedBatch, Scenario

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]
LEASE_S = 3.0  # renewed every 0.5 s


class Store:
    """renew_batches as the store's: refuses the ids in ``stale``, fails while ``down``."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, int]]] = []
        self.stale: set[int] = set()
        self.down = False

    async def renew_batches(self, node: str, held: Sequence[tuple[int, int]],
                            lease_s: float) -> set[int]:
        if self.down:
            raise ConnectionError("the store is away")
        self.calls.append(list(held))
        return {b for b, _ in held if b in self.stale}

    def renewed(self, batch_id: int) -> int:
        return sum(any(b == batch_id for b, _ in call) for call in self.calls)


def batch(batch_id: int = 7) -> ClaimedBatch:
    return ClaimedBatch(id=batch_id, campaign_id=1, epoch=1, node="paris-node1",
                        lease_until=datetime.now(UTC), scenario=Scenario("s", ()),
                        recipients=())


def renewer(renewals: Renewals, done: asyncio.Event, batch_id: int = 7,
            stale: list[int] | None = None) -> asyncio.Task[None]:
    lease = BatchLease(LEASE_S, asyncio.get_running_loop().time())
    extra: dict[str, Any] = {}
    on_stale = (lambda: stale.append(batch_id)) if stale is not None else (lambda: None)
    return asyncio.create_task(keep_lease(renewals, batch(batch_id), lease, asyncio.Event(),
                                          on_stale, extra, done))


def renewals(store: Store) -> Renewals:
    return Renewals(store, "paris-node1", LEASE_S)  # type: ignore[arg-type]


async def test_the_renewers_of_a_node_renew_together_in_one_call_per_tick() -> None:
    store, done = Store(), asyncio.Event()
    r = renewals(store)
    tasks = [renewer(r, done, batch_id=i) for i in range(1, 41)]
    await asyncio.sleep(1.3)  # two or three ticks of 0.5 s
    done.set()
    async with asyncio.timeout(1.0):
        await asyncio.gather(*tasks)
    assert 2 <= len(store.calls) <= 3, store.calls  # one per tick, not one per batch
    assert all(sorted(b for b, _ in call) == list(range(1, 41)) for call in store.calls)
    await r.close()


async def test_a_refused_batch_stops_only_its_renewer() -> None:
    store, done, stale = Store(), asyncio.Event(), []
    store.stale = {2}
    r = renewals(store)
    kept, refused = renewer(r, done, 1, stale), renewer(r, done, 2, stale)
    with pytest.raises(LeaseLost):
        async with asyncio.timeout(1.0):
            await refused
    assert stale == [2] and not kept.done()
    await asyncio.sleep(0.6)
    assert store.renewed(1) >= 2 and store.renewed(2) == 1
    done.set()
    await kept
    await r.close()


async def test_a_store_away_fails_every_renewal_and_they_retry_until_it_answers() -> None:
    store, done = Store(), asyncio.Event()
    store.down = True
    r = renewals(store)
    tasks = [renewer(r, done, i) for i in (1, 2)]
    await asyncio.sleep(0.8)
    assert store.calls == [] and not any(t.done() for t in tasks)  # lease still usable
    store.down = False
    await asyncio.sleep(1.2)  # retried within 0.5 s (renew_every), then on the ticks
    assert store.renewed(1) >= 1 and store.renewed(2) >= 1
    done.set()
    await asyncio.gather(*tasks)
    await r.close()


async def test_a_renewer_ends_once_its_batch_is_done_without_being_cancelled() -> None:
    store, done = Store(), asyncio.Event()
    task = renewer(renewals(store), done)
    await asyncio.sleep(1.2)
    assert store.renewed(7) >= 2  # it renews while the batch is sent from
    done.set()  # and no cancel(): as if the cancellation had been lost
    async with asyncio.timeout(1.0):  # by its next renewal at the latest
        await task
    calls = len(store.calls)
    await asyncio.sleep(0.7)
    assert len(store.calls) == calls


async def test_a_cancelled_renewer_stops_renewing() -> None:
    store = Store()
    task = renewer(renewals(store), asyncio.Event())
    await asyncio.sleep(0.7)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    calls = len(store.calls)
    await asyncio.sleep(0.7)
    assert len(store.calls) == calls
