"""A node's background loops, none of which may die unnoticed.

Beside the dispatcher, a node runs loops for its whole life: the store's health (its dispatch
gate), the watchdog, the channel view, the evidence checkpoints, the drill schedule, the loop's
lag. Each handles the failures it expects (a store or a coordination service away) and keeps
going. One that ends with an exception it did not expect would otherwise go unseen until the
node stops: a store-health loop dead while it judged the node cut keeps the node out of the
dispatch for good, still answering ``/readyz`` as ready. A node half alive is worse than a
node restarted, so :class:`Supervisor` says so at once (``critical``, with the loop's name and
the exception) and calls ``on_failure``: the node stops (draining its batches), exits non-zero,
and its service manager starts it again. ``reap`` waits for a loop at shutdown without raising
again what was already said."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("tenir.supervision")


class Supervisor:
    def __init__(self, on_failure: Callable[[str, BaseException], None],
                 extra: dict[str, str] | None = None) -> None:
        self.on_failure = on_failure
        self.extra = extra or {}
        self.failed: list[tuple[str, BaseException]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self.failed.append((task.get_name(), exc))
        log.critical("background loop %s died: %s: %s; the node stops and its service manager "
                     "starts it again", task.get_name(), type(exc).__name__, exc,
                     exc_info=exc, extra=self.extra)
        self.on_failure(task.get_name(), exc)

    async def reap(self, task: asyncio.Task[None] | None) -> None:
        """Wait for ``task`` to end; its exception, already said, is not raised again."""
        if task is None:
            return
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task
        self._tasks.discard(task)
