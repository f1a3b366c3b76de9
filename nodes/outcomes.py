"""Outcome buffering: outcomes of one batch are written in bulk, by size or after a short delay,
and every write is shielded so that cancelling the dispatcher never loses one half-written.

With a journal (``nodes/journal.py``), each flush first appends its rows to it (fsync'd), then
writes them to the store: while the store is away (a PostgreSQL failover) they wait there, safe
from the node's death, and are retried with whatever was added since, in one fenced write. The
store's answer settles them in the journal: recorded, refused by fencing (``StaleEpoch``: the
batch moved on, nothing more of ours may be written), or refused as invalid (logged, dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nodes.journal import OutcomeJournal, Verdict
from nodes.store_watch import StoreWatch
from replication.store_api import CampaignStore, InvalidInput, NotFound, Outcome, StaleEpoch

log = logging.getLogger("tenir.outcomes")


class OutcomeBuffer:
    def __init__(self, store: CampaignStore, batch_id: int, epoch: int, node: str, *,
                 max_rows: int = 500, max_delay_s: float = 0.2,
                 on_stale: Callable[[StaleEpoch], None] | None = None,
                 journal: OutcomeJournal | None = None,
                 watch: StoreWatch | None = None) -> None:
        self._store = store
        self._batch = batch_id
        self._epoch = epoch
        self._node = node
        self._max_rows = max_rows
        self._max_delay = max_delay_s
        self._rows: list[Outcome] = []  # added, not journaled yet
        self._unrecorded: list[tuple[int | None, list[Outcome]]] = []  # (journal seq, rows)
        self._journaling = 0  # rows taken from _rows, being journaled (not yet in _unrecorded)
        self._journal = journal
        self._watch = watch
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._pending_flush: set[asyncio.Task[None]] = set()
        self._on_stale = on_stale
        self.stale: StaleEpoch | None = None
        self.written = 0
        self.write_errors = 0
        self.invalid = 0
        self.journal_errors = 0
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
        if self._rows and self.stale is None:  # journaled now, whatever the store is doing
            rows, self._rows = self._rows, []
            self._journaling += len(rows)
            try:
                seq = await self._journaled(rows)
            finally:
                self._journaling -= len(rows)
            self._unrecorded.append((seq, rows))
        if self.stale is not None:  # the batch moved on: nothing more of ours is written
            self._rows.clear()
            self._settle(list(self._unrecorded), "refused")
            return
        if self._lock.locked():
            return  # a write is under way (the store may hang): it or its retry takes these
        async with self._lock:
            while self._unrecorded:
                if self.stale is not None:
                    self._settle(list(self._unrecorded), "refused")
                    return
                if not await self._write(list(self._unrecorded)):
                    return

    async def _write(self, groups: list[tuple[int | None, list[Outcome]]]) -> bool:
        """One fenced write of ``groups``; whether the store answered (False: retry later)."""
        rows = [o for _, group in groups for o in group]
        try:
            await self._record(rows)
        except StaleEpoch as exc:
            self._settle(list(self._unrecorded), "refused")  # nothing more of ours is written
            self.stale = exc
            if self._on_stale is not None:
                self._on_stale(exc)
        except (InvalidInput, NotFound) as exc:  # never storable: say it, do not retry
            self._settle(groups, "invalid")
            self.invalid += len(rows)
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("batch %d: %d outcomes refused by the store, dropped: %s",
                      self._batch, len(rows), exc)
        except Exception as exc:  # the database is unreachable (failover): keep, retry
            self.write_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(
                    self._retry_delay, self._spawn_flush)
            return False
        else:
            self._settle(groups, "recorded")
            self.written += len(rows)
        return True

    async def _record(self, rows: list[Outcome]) -> None:
        """The fenced write, told to the store watch: answered (recorded or refused), or not."""
        write = self._watch.begin() if self._watch is not None else -1
        answered = False
        try:
            await self._store.record_outcomes(self._batch, self._epoch, self._node, rows)
            answered = True
        except (StaleEpoch, InvalidInput, NotFound):
            answered = True
            raise
        finally:
            if self._watch is not None:
                (self._watch.answered if answered else self._watch.failed)(write)

    async def _journaled(self, rows: list[Outcome]) -> int | None:
        """Append ``rows`` to the journal: its sequence number, or None without one (or when
        it fails: the rows then live in memory only, as without a journal, and it is logged)."""
        if self._journal is None:
            return None
        try:
            return await self._journal.append(self._batch, self._epoch, rows)
        except Exception as exc:
            self.journal_errors += 1
            log.error("batch %d: outcome journal write failed, %d outcomes kept in memory "
                      "only: %s", self._batch, len(rows), exc)
            return None

    def _settle(self, groups: list[tuple[int | None, list[Outcome]]], verdict: Verdict) -> None:
        """These groups are done with: out of the buffer, settled in the journal."""
        # in place: a flush that journals meanwhile appends to this same list
        self._unrecorded[:] = [g for g in self._unrecorded if all(g is not d for d in groups)]
        seqs = [s for s, _ in groups if s is not None]
        if self._journal is not None and seqs:
            self._journal.settle(seqs, verdict)

    @property
    def pending(self) -> int:
        """Outcomes not recorded yet (journaled, being journaled, or not yet)."""
        return (len(self._rows) + self._journaling
                + sum(len(g) for _, g in self._unrecorded))

    async def close(self, deadline_s: float | None = 20.0) -> bool:
        """Flush everything, including flushes under way, retrying while the database is away
        for at most ``deadline_s`` (None: until it answers; a caller cancels it at shutdown,
        and the journal keeps what was not recorded). Returns whether nothing is left
        unwritten."""
        loop = asyncio.get_running_loop()
        until = None if deadline_s is None else loop.time() + deadline_s
        while True:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for task in list(self._pending_flush):
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(task)
            await self.flush()
            done = not self.pending or self.stale is not None
            if done or (until is not None and loop.time() >= until):
                return done
            await asyncio.sleep(self._retry_delay)
