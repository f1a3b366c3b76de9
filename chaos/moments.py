"""When to inject, and when a campaign is over, read from the history as the collectors fill it.

Moments (``Scenario.moments``): ``start`` once the campaign's first final outcome is recorded
(it is sending: batches are held), ``early`` at 10 % (the nodes' reserves have grown with
their rate and most of the campaign is still to send), ``middle`` once half its recipients
have a final outcome, ``end`` at 90 %, ``during-pg-failover`` at the middle too (the runner
first makes PostgreSQL fail over, then injects the scenario's fault while the other site is
being promoted).

:class:`CampaignWatch` reads the history incrementally (each call looks only at the operations
added since the previous one), so polling it is cheap however long the history grows.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.history import History

FRACTION = {"start": 0.0, "early": 0.1, "middle": 0.5, "end": 0.9, "during-pg-failover": 0.5}


def threshold(moment: str, recipients: int) -> int:
    """Final outcomes the campaign must have for ``moment`` (at least one)."""
    if moment not in FRACTION:
        raise ValueError(f"moment: one of {', '.join(FRACTION)}, not {moment!r}")
    return max(1, math.ceil(FRACTION[moment] * recipients))


@dataclass
class CampaignWatch:
    history: History
    campaign: int
    _seen: int = 0
    _finals: set[int] = field(default_factory=set)
    completed_at: float | None = None

    def update(self) -> int:
        """Recipients of the campaign seen with a final outcome so far."""
        ops = self.history.ops
        for op in ops[self._seen:]:
            if op.type != "ok" or op.value.get("campaign") != self.campaign:
                continue
            if op.f == "outcome" and op.value.get("final"):
                self._finals.add(int(op.value["recipient"]))
            elif op.f == "complete":
                self.completed_at = op.at
        self._seen = len(ops)
        return len(self._finals)

    async def until(self, count: int, timeout_s: float, period_s: float = 0.2) -> bool:
        """Wait until ``count`` final outcomes are seen (or the campaign completed); False at
        the timeout."""
        return await self._wait(lambda: self.update() >= count or self.completed_at is not None,
                                timeout_s, period_s)

    async def completed(self, timeout_s: float, period_s: float = 0.5) -> bool:
        def done() -> bool:
            self.update()
            return self.completed_at is not None

        return await self._wait(done, timeout_s, period_s)

    @staticmethod
    async def _wait(ready: Callable[[], bool], timeout_s: float, period_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(period_s)
        return True
