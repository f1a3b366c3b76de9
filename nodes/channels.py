"""Which channels work where: each node publishes, in its membership, the channels whose
breakers are closed at its site, and reads the other members' to know whether a channel that
fails here works at another site.

A node hands a failing channel's work to another site only if a live member of another site
still has that channel; otherwise it keeps the work and follows the scenario's fallback, so
alerts never stall because a channel is down everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cluster.coordination.base import CoordinationError, Coordinator, MemberInfo
from nodes.breaker import Breakers
from nodes.member_publish import Publication

log = logging.getLogger("tenir.channels")


class ChannelView:
    def __init__(self, coordinator: Coordinator, me: MemberInfo, breakers: Breakers,
                 cycle_s: float = 1.0, publication: Publication | None = None) -> None:
        """``publication``: shared with the store health, which publishes its own fields."""
        self.coordinator = coordinator
        self.me = me
        self.publication = publication or Publication(coordinator, me)
        self.breakers = breakers
        self.cycle_s = cycle_s
        self._elsewhere: dict[str, bool] = {}
        self._published: tuple[str, ...] = me.carriers

    def available_elsewhere(self, channel: str) -> bool:
        return self._elsewhere.get(channel, False)

    async def refresh(self) -> None:
        working = tuple(c for c in self.me.carriers if c not in self.breakers.open_channels())
        if working != self._published:
            await self.publication.publish(carriers=working)
            log.warning("channels working at this node now: %s", ", ".join(working) or "none",
                        extra={"node": self.me.name, "site": self.me.site})
            self._published = working
        members = await self.coordinator.members()
        self._elsewhere = {c: any(m.site != self.me.site and c in m.carriers for m in members)
                           for c in self.me.carriers}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except CoordinationError as exc:
                self._elsewhere = {}  # unknown: keep the work, follow the fallback
                log.debug("channel view not refreshed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cycle_s)
