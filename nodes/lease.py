"""A claimed batch's lease as its holder sees it, and the task that renews it.

The holder counts the lease from the moment it *sent* the claim or renewal (the database set
its deadline later, from its own ``now()``): its view ends no later than the database's. It
sends from the batch only while more than ``safety`` of it is left, and renews it every
``renew_every``. While the store is away (a PostgreSQL failover), renewals fail and the holder
keeps sending until ``safety`` is left, then stops the batch: nobody can claim it before its
lease ends in the database, so a batch is never sent from by two nodes at once.

How long a holder can go on through an outage, at worst (a renewal just before it missed):
``lease - renew_every - safety`` = 13/18 of the lease (32.5 s of the lab's 45 s; a Patroni
failover takes at most ttl + loop_wait + ~1.5 s = 23.5 s there: docs/failover-timings.md).

A node's renewers renew on one tick (multiples of ``renew_every`` on the loop's clock) through
:class:`Renewals`, which sends the renewals asked for within ``COALESCE_S`` in one statement:
one per node and tick instead of one per batch held (a node holds a few hundred with its
reserve; renewed one by one they were a third of the statements PostgreSQL ran). A batch's
first renewal comes sooner than ``renew_every`` after its claim, never later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from replication.store_api import CampaignStore, ClaimedBatch, StaleEpoch

log = logging.getLogger("tenir.dispatcher")
MIN_SAFETY_S = 1.0  # a send checked just before the deadline still reaches its carrier in time
COALESCE_S = 0.05  # renewals asked for within this go in one statement


class LeaseLost(Exception):
    pass


def renew_every(lease_s: float) -> float:
    return lease_s / 6


def safety(lease_s: float) -> float:
    return max(lease_s / 9, MIN_SAFETY_S)


def outage_cover(lease_s: float) -> float:
    """Seconds a holder sends through a store outage at worst (see the module docstring)."""
    return lease_s - renew_every(lease_s) - safety(lease_s)


class BatchLease:
    def __init__(self, lease_s: float, sent_at: float,
                 clock: Callable[[], float] | None = None) -> None:
        """``sent_at``: the holder's clock when the claim was sent."""
        self.lease_s = lease_s
        self.valid_until = sent_at + lease_s
        self.clock = clock or asyncio.get_running_loop().time

    @property
    def usable_until(self) -> float:
        return self.valid_until - safety(self.lease_s)

    def usable(self) -> bool:
        return self.clock() < self.usable_until

    def renewed(self, sent_at: float) -> None:
        self.valid_until = max(self.valid_until, sent_at + self.lease_s)


class Renewals:
    """Renews the leases asked for within ``COALESCE_S`` in one store call. ``renew`` returns
    once its batch is renewed; raises StaleEpoch when the store refused that batch (the others
    are renewed all the same), or the store's error, which every renewal of that call gets.
    The call runs in a task of its own (tracked, cancelled by ``close``): a renewer cancelled
    meanwhile does not cancel the others' renewal."""

    def __init__(self, store: CampaignStore, node: str, lease_s: float) -> None:
        self._store = store
        self._node = node
        self._lease_s = lease_s
        self._asked: dict[int, tuple[int, asyncio.Future[None]]] = {}
        self._sending: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def renew(self, batch_id: int, epoch: int) -> None:
        loop = asyncio.get_running_loop()
        asked = self._asked.get(batch_id)
        if asked is None or asked[0] != epoch:
            asked = (epoch, loop.create_future())
            self._asked[batch_id] = asked
        if self._sending is None:
            self._sending = loop.create_task(self._send_soon())
            self._tasks.add(self._sending)
            self._sending.add_done_callback(self._tasks.discard)
        await asyncio.shield(asked[1])

    def _take(self) -> dict[int, tuple[int, asyncio.Future[None]]]:
        asked, self._asked, self._sending = self._asked, {}, None
        return asked

    async def _send_soon(self) -> None:
        asked: dict[int, tuple[int, asyncio.Future[None]]] | None = None
        try:
            await asyncio.sleep(COALESCE_S)  # the other renewers of this tick ask meanwhile
            asked = self._take()
            refused = await self._store.renew_batches(
                self._node, sorted((b, e) for b, (e, _) in asked.items()), self._lease_s)
        except BaseException as exc:
            for _, fut in (asked if asked is not None else self._take()).values():
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception)
                                      else ConnectionError("renewal cancelled"))
                fut.exception()  # retrieved here: a renewer gone meanwhile leaves no warning
            raise
        for batch_id, (epoch, fut) in asked.items():
            if fut.done():
                continue
            if batch_id in refused:
                fut.set_exception(StaleEpoch(batch_id, epoch, self._node))
                fut.exception()
            else:
                fut.set_result(None)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def next_tick(now: float, every: float) -> float:
    """Seconds until the node's next renewal tick (a multiple of ``every``)."""
    return every - (now % every)


async def keep_lease(renewals: Renewals, batch: ClaimedBatch, lease: BatchLease,
                     lost: asyncio.Event, on_stale: Callable[[], None],
                     extra: dict[str, Any], done: asyncio.Event) -> None:
    """Renew ``batch``'s lease until ``done`` is set (or until cancelled). Raises LeaseLost when
    the store refuses a renewal (the batch moved on), when ``lost`` is set (a refused write),
    or once the lease is no longer usable (not renewed in time: ``lost`` is set then too).

    ``done`` and not only the cancellation: on the lab one renewer in about 10,000 went on
    renewing a finished batch for good (its campaign never completed), as a cancellation that
    lands when ``asyncio.wait_for``'s timeout fires is lost on Python 3.11. The wait is now
    ``asyncio.timeout``, which tells its own timeout from a cancellation, and the loop ends
    once ``done`` is set whatever became of the cancellation."""
    every = renew_every(lease.lease_s)
    wait = next_tick(lease.clock(), every)
    while True:
        left = lease.usable_until - lease.clock()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, min(wait, left))):
                await lost.wait()
        if done.is_set():
            return
        if lost.is_set():
            raise LeaseLost(f"batch {batch.id} epoch {batch.epoch} is no longer ours")
        if not lease.usable():
            lost.set()
            raise LeaseLost(f"batch {batch.id}: lease not renewed, "
                            f"{lease.valid_until - lease.clock():.1f} s left; stopping before "
                            "it can expire")
        sent = lease.clock()
        try:
            await renewals.renew(batch.id, batch.epoch)
            lease.renewed(sent)
            wait = next_tick(lease.clock(), every)
        except StaleEpoch as exc:
            on_stale()
            lost.set()
            raise LeaseLost(str(exc)) from exc
        except Exception as exc:  # database away: retry soon, stop before expiry (above)
            wait = min(1.0, every)
            log.warning("lease renewal of batch %d failed (%.1f s left): %s", batch.id,
                        lease.valid_until - lease.clock(), exc, extra=extra)
