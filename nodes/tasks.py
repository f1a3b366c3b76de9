"""A tracked set of asyncio tasks: every task an adapter, a simulator or the node's main module
starts is owned here, its failure is logged (never lost) and, with ``on_failure``, acted on at
once; ``wait`` reaps the tasks that end by themselves, ``close`` cancels and reaps the rest.

The node's background loops (store health, watchdog, channels, checkpoints, drill schedule, loop
lag: ``nodes/main.py``) run in one, whose ``on_failure`` stops the node: a loop dead of an error
it did not expect would otherwise go unseen until shutdown (a store-health loop dead while it
judged the node cut keeps the node out of the dispatch for good, ``/readyz`` still ready)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any


class TaskSet:
    def __init__(self, name: str, logger: logging.Logger,
                 on_failure: Callable[[str, BaseException], None] | None = None) -> None:
        self.name = name
        self._log = logger
        self.on_failure = on_failure
        self.failed: list[str] = []  # names of the tasks that ended with an exception
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str | None = None) -> None:
        """Run ``coro`` as an owned task. After ``close`` the coroutine is discarded."""
        if self._closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._log.error(
                "task failed",
                exc_info=exc,
                extra={"event": "task_failed", "tasks": self.name, "task": task.get_name()},
            )
            self.failed.append(task.get_name())
            if self.on_failure is not None:
                self.on_failure(task.get_name(), exc)

    async def wait(self, grace_s: float | None = None) -> bool:
        """Wait for the running tasks to finish by themselves; True if they all did in time."""
        if not self._tasks:
            return True
        _done, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
        return not pending

    async def close(self, grace_s: float = 2.0) -> None:
        """Cancel every task still running and wait (up to ``grace_s``) until they are reaped."""
        self._closed = True
        while self._tasks:
            tasks = set(self._tasks)
            for task in tasks:
                task.cancel()
            _done, pending = await asyncio.wait(tasks, timeout=grace_s)
            if pending:
                self._log.error(
                    "tasks did not end after cancellation",
                    extra={"event": "tasks_stuck", "tasks": self.name, "count": len(pending)},
                )
                return
