"""Membership and self-fencing of an alert node.

The node joins the coordination service under a lease (etcd) or session (ZooKeeper). It may send
only while the server confirmed that membership less than ``ttl - safety`` seconds ago: past that,
the dispatcher sends nothing more, before the membership can expire and the watchdog hand the
node's batches to others. The gate logs each change, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from cluster.coordination.base import CoordinationError, Coordinator, MemberInfo

log = logging.getLogger("tenir.membership")


class MembershipGate:
    """The dispatcher's ``DispatchGate`` backed by the coordination membership."""

    def __init__(self, coordinator: Coordinator, safety: float, node: str, site: str) -> None:
        self.coordinator = coordinator
        self.safety = safety
        self.extra = {"node": node, "site": site}
        self._open: bool | None = None
        self.closed_count = 0

    def may_dispatch(self) -> bool:
        ok = self.coordinator.may_act(self.safety)
        if ok != self._open:
            age = self.coordinator.membership_age()
            ttl = self.coordinator.settings.ttl
            if ok:
                log.info("membership confirmed %.1f s ago: dispatching", age, extra=self.extra)
            else:
                self.closed_count += 1
                log.warning("self-fencing: membership last confirmed %.1f s ago, ttl %.1f s, "
                            "safety %.1f s: no more sending until it is renewed", age, ttl,
                            self.safety, extra=self.extra)
            self._open = ok
        return ok


async def open_and_join(open_coordinator: Callable[[], Awaitable[Coordinator]],
                        member: MemberInfo, deadline_s: float = 120.0,
                        pause_s: float = 1.0) -> Coordinator:
    """Open a coordinator and join as ``member``, retrying (every ``pause_s``, until
    ``deadline_s``, then the last error) while the service is away, or while the name is still
    held by a previous incarnation: a node restarted within its ttl after a kill -9 waits until
    the dead one's lease or session expires.

    A failed attempt's coordinator is closed before the next one. Left open, it would keep
    retrying in the background, take the name once the old membership expired, and keep it under
    a lease nobody uses: every later attempt would be refused until the deadline."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline_s
    while True:
        coordinator: Coordinator | None = None
        try:
            coordinator = await open_coordinator()
            await coordinator.join(member)
            return coordinator
        except CoordinationError as exc:
            if coordinator is not None:
                with contextlib.suppress(Exception):
                    await coordinator.close()
            if loop.time() >= until:
                raise
            log.warning("not a member yet, retrying: %s", exc,
                        extra={"node": member.name, "site": member.site})
            await asyncio.sleep(pause_s)


class FreshMembership:
    """Fresh proof of membership, asked of the server when needed: ``fresh(within_s)`` is True
    when the server confirmed this member less than ``within_s`` ago, asking it now if not (one
    request at a time, the waiters behind it served by its answer); False when the server did
    not confirm within its retry timeout. The dispatcher asks before it starts a batch that it
    cannot record yet (``nodes/dispatcher.py``): a node whose site is cut off loses its quorum
    with the store, so it stops at once rather than when its membership lease runs out."""

    def __init__(self, coordinator: Coordinator, node: str, site: str) -> None:
        self.coordinator = coordinator
        self.extra = {"node": node, "site": site}
        self._lock = asyncio.Lock()
        self.refused = 0

    async def fresh(self, within_s: float) -> bool:
        if self.coordinator.membership_age() < within_s:
            return True
        async with self._lock:
            if self.coordinator.membership_age() < within_s:
                return True  # confirmed by the request this one waited behind
            try:
                await self.coordinator.confirm()
            except CoordinationError as exc:
                self.refused += 1
                log.warning("membership not confirmed on demand: %s", exc, extra=self.extra)
                return False
            return True


class HeldBatches(Protocol):
    async def batches_in_flight(self) -> dict[str, int]: ...


async def wait_previous_life_moved(store: HeldBatches, node: str, site: str, deadline_s: float,
                                   pause_s: float = 0.5) -> int:
    """Before a node joins, wait until no batch is held under its name any more.

    A node killed and restarted by its service manager comes back under the same name. Were it
    to join at once, the watchdog would see a live member and never move the batches its
    previous life held: they would wait for their leases to run out. Out of the membership, it
    is a dead node like any other: the watchdog moves its batches (and records the move), then
    it joins. After ``deadline_s`` (the batch lease: by then they are claimable anyway) it joins
    regardless. Returns how many batches were held at the start."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline_s
    first: int | None = None
    while True:
        try:
            held = (await store.batches_in_flight()).get(node, 0)
        except Exception as exc:  # the store is away: joining is what it would wait for anyway
            log.warning("cannot tell whether batches of a previous life are held (%s): joining",
                        exc, extra={"node": node, "site": site})
            return first or 0
        if first is None:
            first = held
            if held:
                log.warning("%d batches of this node's previous life are still held under its "
                            "name: waiting out of the membership until the watchdog moves them",
                            held, extra={"node": node, "site": site})
        if held == 0:
            if first:
                log.info("the batches of this node's previous life were moved: joining",
                         extra={"node": node, "site": site})
            return first
        if loop.time() >= until:
            log.warning("%d batches of this node's previous life still held after %.0f s: "
                        "joining (their leases have run out)", held, deadline_s,
                        extra={"node": node, "site": site})
            return first
        await asyncio.sleep(pause_s)
