"""What this node publishes in its membership, shared by those who change it: the channels that
work here (``nodes/channels.py``) and whether it reaches the store (``nodes/store_health.py``).
Each publishes only its own fields; the others' are kept (one current ``MemberInfo``, one
writer at a time)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from cluster.coordination.base import Coordinator, MemberInfo


class Publication:
    def __init__(self, coordinator: Coordinator, me: MemberInfo) -> None:
        self.coordinator = coordinator
        self.current = me
        self._lock = asyncio.Lock()

    async def publish(self, **changes: Any) -> MemberInfo:
        """Re-join with ``changes`` applied to what is published now; returns it. Raises the
        coordinator's errors (``CoordinationError``) and then keeps the change for the next
        publication, so that a field set during an outage is not lost."""
        async with self._lock:
            self.current = dataclasses.replace(self.current, **changes)
            await self.coordinator.join(self.current)
            return self.current
