"""The watchdog: every alert node runs it, one leads (election ``watchdog``).

Each cycle reads one frozen :class:`Snapshot` (who is a member, who holds which batches), decides
with a pure function (:func:`decide`), acts, and returns a sentence saying what it did. The
sentence is logged; a cycle that moved work also stores it as an event with its timestamp.

What it moves today: the batches of a node that is no longer a member (its lease or session
expired: the process died, its host died, or its site was cut from the coordination quorum).
Such a node has stopped sending before its membership could expire (self-fencing), and should it
still write, the database refuses its stale epoch. Moving a batch puts it back in the queue; the
next claim, by any live node, takes it with a higher epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from cluster.coordination.base import CoordinationError, Coordinator
from replication.store_api import CampaignStore

log = logging.getLogger("tenir.watchdog")
ELECTION = "watchdog"


@dataclass(frozen=True)
class Snapshot:
    """Everything one cycle decides on, read once."""

    taken_at: float
    leader: str | None
    members: Mapping[str, str]  # live member name -> site
    in_flight: Mapping[str, int]  # node -> batches it holds


@dataclass(frozen=True)
class Decision:
    reassign: tuple[str, ...] = ()  # nodes whose batches go back to the queue
    notes: tuple[str, ...] = field(default=())


def decide(snap: Snapshot) -> Decision:
    """Pure: which nodes hold work but are no longer members."""
    dead = tuple(sorted(n for n, count in snap.in_flight.items()
                        if count > 0 and n not in snap.members))
    return Decision(reassign=dead)


class Watchdog:
    def __init__(self, coordinator: Coordinator, store: CampaignStore, *, node: str, site: str,
                 cycle_s: float = 1.0) -> None:
        self.coordinator = coordinator
        self.store = store
        self.node = node
        self.site = site
        self.cycle_s = cycle_s
        self.last_sentence = ""

    async def snapshot(self) -> Snapshot:
        members = {m.name: m.site for m in await self.coordinator.members()}
        leader = await self.coordinator.leader(ELECTION)
        in_flight = await self.store.batches_in_flight()
        return Snapshot(time.monotonic(), leader, members, in_flight)

    async def cycle(self) -> str:
        """One cycle; returns the sentence saying what it did."""
        try:
            leads = await self.coordinator.campaign(ELECTION)
        except CoordinationError as exc:
            return f"{self.node}: cannot reach the coordination service ({exc}); not acting"
        if not leads:
            try:
                leader = await self.coordinator.leader(ELECTION)
            except CoordinationError:
                leader = None
            return f"{self.node}: following watchdog leader {leader or 'unknown'}"
        snap = await self.snapshot()
        decision = decide(snap)
        if not decision.reassign:
            held = sum(snap.in_flight.values())
            return (f"{self.node} leads: {len(snap.members)} members, {held} batches in flight,"
                    " nothing to move")
        moved: dict[str, int] = {}
        for dead in decision.reassign:
            moved[dead] = await self.store.reassign_batches(dead)
        parts = [f"{n} batches of {dead}" for dead, n in moved.items()]
        sentence = (f"{self.node} leads: moved {', '.join(parts)} (no longer members) back to "
                    f"the queue for the {len(snap.members)} live members")
        await asyncio.shield(self.store.record_event(
            "watchdog.move", sentence, self.node, self.site,
            details={"moved": moved, "members": sorted(snap.members)}))
        return sentence

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle until ``stop`` is set; log each sentence that differs from the last one."""
        while not stop.is_set():
            try:
                sentence = await self.cycle()
            except Exception as exc:  # the store may be failing over: say so, try again
                sentence = f"{self.node}: watchdog cycle failed: {type(exc).__name__}: {exc}"
            if sentence != self.last_sentence:
                log.info(sentence, extra={"node": self.node, "site": self.site})
                self.last_sentence = sentence
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cycle_s)
