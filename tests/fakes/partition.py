"""One node's view of a shared in-memory store, which a test can cut: while ``cut``, every call
of the store's interface raises ConnectionError for this node alone (other nodes keep the
store); while ``stalled``, every call waits (a pool waiting for a connection to a server that
is not there) and goes through once it is cleared; ``after`` (if set) is told the name of each
call that returned; a call named in ``lose_answer`` (taken from it, once) is carried out by the
store and then raises ConnectionError, as when the server fails while it replies. For unit tests
only: a node partitioned from PostgreSQL, or a PostgreSQL failover as one node sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tests.fakes.memory_store import MemoryStore


class PartitionedView:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.cut = False
        self.stalled = False
        self.after: Callable[[str], None] | None = None
        self.lose_answer: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name.startswith("_") or not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            while self.stalled:
                await asyncio.sleep(0.005)
            if self.cut:
                raise ConnectionError("campaign store unreachable from this node")
            method: Callable[..., Awaitable[Any]] = attr
            result = await method(*args, **kwargs)
            if name in self.lose_answer:
                self.lose_answer.discard(name)
                raise ConnectionError("server closed the connection unexpectedly")
            if self.after is not None:
                self.after(name)
            return result

        return call
