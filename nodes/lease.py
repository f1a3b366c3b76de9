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


async def keep_lease(store: CampaignStore, batch: ClaimedBatch, lease: BatchLease,
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
    wait = every
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
            await store.renew_batch(batch.id, batch.epoch, batch.node, lease.lease_s)
            lease.renewed(sent)
            wait = every
        except StaleEpoch as exc:
            on_stale()
            lost.set()
            raise LeaseLost(str(exc)) from exc
        except Exception as exc:  # database away: retry soon, stop before expiry (above)
            wait = min(1.0, every)
            log.warning("lease renewal of batch %d failed (%.1f s left): %s", batch.id,
                        lease.valid_until - lease.clock(), exc, extra=extra)
