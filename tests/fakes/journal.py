"""An in-memory outcome journal (``nodes.journal.OutcomeJournal``) whose appends take
``delay_s`` (a slow disk), for unit tests only."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nodes.journal import Verdict
from replication.store_api import Outcome


class SlowJournal:
    def __init__(self, delay_s: float = 0.05) -> None:
        self.delay_s = delay_s
        self.groups: dict[int, tuple[int, int, list[Outcome]]] = {}
        self.verdicts: dict[int, Verdict] = {}
        self._next = 1

    async def append(self, batch_id: int, epoch: int, outcomes: Sequence[Outcome]) -> int:
        seq, self._next = self._next, self._next + 1
        await asyncio.sleep(self.delay_s)
        self.groups[seq] = (batch_id, epoch, list(outcomes))
        return seq

    def settle(self, seqs: Sequence[int], verdict: Verdict) -> None:
        for s in seqs:
            self.verdicts[s] = verdict

    @property
    def unsettled(self) -> int:
        return sum(len(g[2]) for s, g in self.groups.items() if s not in self.verdicts)
