"""Outcome buffering: outcomes of one batch are written in bulk, by size or after a short delay,
and every write is shielded so that cancelling the dispatcher never loses one half-written."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from replication.store_api import CampaignStore, Outcome, StaleEpoch


class OutcomeBuffer:
    def __init__(self, store: CampaignStore, batch_id: int, epoch: int, node: str, *,
                 max_rows: int = 500, max_delay_s: float = 0.2,
                 on_stale: Callable[[StaleEpoch], None] | None = None) -> None:
        self._store = store
        self._batch = batch_id
        self._epoch = epoch
        self._node = node
        self._max_rows = max_rows
        self._max_delay = max_delay_s
        self._rows: list[Outcome] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._pending_flush: set[asyncio.Task[None]] = set()
        self._on_stale = on_stale
        self.stale: StaleEpoch | None = None
        self.written = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self._retry_delay = 0.5

    def add(self, outcome: Outcome) -> None:
        if self.stale is not None:
            return  # we lost this batch: nothing more of ours may be written
        self._rows.append(outcome)
        if len(self._rows) >= self._max_rows:
            self._spawn_flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._max_delay, self._spawn_flush)

    def _spawn_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.get_running_loop().create_task(self.flush())
        self._pending_flush.add(task)
        task.add_done_callback(self._pending_flush.discard)

    async def flush(self) -> None:
        """Write what is buffered. Shielded: a cancelled caller does not cancel the write."""
        await asyncio.shield(self._flush())

    async def _flush(self) -> None:
        async with self._lock:
            if not self._rows or self.stale is not None:
                self._rows.clear()
                return
            rows, self._rows = self._rows, []
            try:
                await self._store.record_outcomes(self._batch, self._epoch, self._node, rows)
                self.written += len(rows)
            except StaleEpoch as exc:
                self.stale = exc
                if self._on_stale is not None:
                    self._on_stale(exc)
            except Exception as exc:  # the database is unreachable (failover): keep, retry
                self._rows = rows + self._rows
                self.write_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(
                        self._retry_delay, self._spawn_flush)

    @property
    def pending(self) -> int:
        return len(self._rows)

    async def close(self, deadline_s: float = 20.0) -> bool:
        """Flush everything, including flushes under way, retrying while the database is away
        for at most ``deadline_s``. Returns whether nothing is left unwritten."""
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline_s
        while True:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for task in list(self._pending_flush):
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(task)
            await self.flush()
            if not self._rows or self.stale is not None or loop.time() >= until:
                return not self._rows or self.stale is not None
            await asyncio.sleep(self._retry_delay)
