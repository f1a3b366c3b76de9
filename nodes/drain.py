"""Site drain for maintenance, as an alert node sees it.

An operator drains a site (``tenir site drain SITE``) by creating the coordination key
``drain/<site>``; ``tenir site undrain SITE`` deletes it. Every alert node follows the keys under
``drain/`` with a watch (whose first event, and the first after any broken stream, is a full
``resync``) and, while its own site is drained, takes no new batches: the dispatcher asks
:meth:`SiteDrainGate.may_claim` before every claim. Batches already held are finished, so the
site's work moves to the other site batch by batch, with nothing released half-done.

The gate keeps the last state it saw while the coordination service is away: a node cut off from
it goes on doing what it was told last (its membership gate fences it anyway). Until the first
``resync`` arrives the gate is open: alerts keep flowing rather than wait for maintenance flags.

Ownership: :meth:`SiteDrainGate.start` creates one task that follows the watch (re-opening it
after a failure); :meth:`SiteDrainGate.close` cancels it and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cluster.coordination.base import (
    CoordinationUnavailable,
    Coordinator,
    MemberInfo,
    WatchEvent,
)
from failover.watchdog import ELECTION

log = logging.getLogger("tenir.drain")

DRAIN_PREFIX = "drain/"


def drain_key(site: str) -> str:
    return f"{DRAIN_PREFIX}{site}"


def site_of_key(key: str) -> str | None:
    """``drain/paris`` -> ``paris``; None for a key that names no site."""
    if not key.startswith(DRAIN_PREFIX):
        return None
    site = key[len(DRAIN_PREFIX):]
    return site if site and "/" not in site else None


class SiteDrainGate:
    """The dispatcher's ``ClaimGate``: False while this node's own site is drained."""

    def __init__(self, coordinator: Coordinator, node: str, site: str,
                 retry_s: float = 1.0) -> None:
        self.coordinator = coordinator
        self.node = node
        self.site = site
        self.retry_s = retry_s
        self.extra = {"node": node, "site": site}
        self._drained: set[str] = set()
        self._synced = asyncio.Event()
        self._open: bool | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def drained_sites(self) -> frozenset[str]:
        """The drained sites, as last seen through the watch."""
        return frozenset(self._drained)

    @property
    def synced(self) -> bool:
        """Whether a full state (``resync``) has been received at least once."""
        return self._synced.is_set()

    def may_claim(self) -> bool:
        ok = self.site not in self._drained
        if ok != self._open:
            if ok and self._open is not None:
                log.info("site %s undrained: taking new batches again", self.site,
                         extra=self.extra)
            elif not ok:
                log.warning("site %s drained for maintenance: no new batches; the batches "
                            "held are finished", self.site, extra=self.extra)
            self._open = ok
        return ok

    def apply(self, event: WatchEvent) -> None:
        """Update the drained sites from one watch event."""
        if event.kind == "resync":
            self._drained = {s for s in map(site_of_key, event.state) if s is not None}
            self._synced.set()
            return
        site = site_of_key(event.key)
        if site is None:
            return
        if event.kind == "put":
            self._drained.add(site)
        else:
            self._drained.discard(site)

    async def start(self, first_sync_s: float) -> bool:
        """Start following the drain keys; wait (at most ``first_sync_s``) for the first full
        state. Returns whether it arrived; if not, the gate stays open until it does."""
        if self._task is not None:
            raise RuntimeError("SiteDrainGate already started")
        self._task = asyncio.create_task(self._follow(), name=f"drain-watch-{self.node}")
        try:
            async with asyncio.timeout(first_sync_s):
                await self._synced.wait()
        except TimeoutError:
            log.warning("drain flags not read within %.1f s; claiming until they are",
                        first_sync_s, extra=self.extra)
            return False
        return True

    async def _follow(self) -> None:
        while True:
            events = self.coordinator.watch(DRAIN_PREFIX)
            try:
                async for event in events:
                    self.apply(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the watch re-establishes itself; this is a last resort
                log.warning("drain watch failed (%s); retrying in %.1f s", exc, self.retry_s,
                            extra=self.extra)
            finally:
                aclose = getattr(events, "aclose", None)  # an async generator: finalise it
                if aclose is not None:
                    await aclose()
            await asyncio.sleep(self.retry_s)

    async def close(self) -> None:
        """Stop following the drain keys. Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class CoordinationClusterView:
    """The coordination-backed part of ``GET /api/v1/cluster`` (``nodes.api.context.ClusterView``):
    members and watchdog leader read from the coordinator, drained sites from the gate."""

    def __init__(self, coordinator: Coordinator, drains: SiteDrainGate) -> None:
        self.coordinator = coordinator
        self.drains = drains

    async def members(self) -> list[MemberInfo]:
        return await self.coordinator.members()

    async def watchdog_leader(self) -> str | None:
        return await self.coordinator.leader(ELECTION)

    async def drained_sites(self) -> list[str]:
        if not self.drains.synced:
            raise CoordinationUnavailable("drain flags not read from the coordination service yet")
        return sorted(self.drains.drained_sites)
