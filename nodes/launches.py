"""Streaming launches on the node that took the API call: the first chunk is written before the
API answers (claimable at once), the rest by a task this object owns, one chunk per
transaction, behind the dispatchers that are already sending.

If a chunk cannot be written (the database is away longer than ``give_up_s``, or refuses), the
writer fails the launch itself: the campaign goes on sending what was written and ends
'failed'. If this node dies, the watchdog leader fails it (``failover/watchdog.py``). If the
watchdog failed it while this writer was only slow (or the operator cancelled the campaign),
the next chunk is refused by the database and the writer stops. ``close`` (node shutdown)
lets running launches finish until its deadline, then cancels them and fails them: the
failure is written shielded from that cancellation.
"""

from __future__ import annotations

import asyncio
import logging

from nodes.logs import campaign_context
from replication.store_api import CampaignStore, LaunchCursor, LaunchStopped

log = logging.getLogger("tenir.launches")


class LaunchWriter:
    def __init__(self, store: CampaignStore, node: str, *, first: int = 1000,
                 chunk: int = 20_000, retry_s: float = 1.0, give_up_s: float = 10.0) -> None:
        self.store = store
        self.node = node
        self.first = first
        self.chunk = chunk
        self.retry_s = retry_s
        self.give_up_s = give_up_s
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def writing(self) -> int:
        return len(self._tasks)

    async def launch(self, scenario: str, launched_by: str, *, group: str | None = None,
                     population: int | None = None,
                     batch_size: int | None = None) -> LaunchCursor:
        """Write the campaign and its first chunk; the rest follows in the background."""
        cursor = await self.store.start_launch(
            scenario, launched_by, node=self.node, group=group, population=population,
            batch_size=batch_size, first=self.first)
        if not cursor.done:
            task = asyncio.create_task(self._write_rest(cursor),
                                       name=f"launch-{cursor.campaign_id}")
            self._tasks.add(task)
            task.add_done_callback(self._reap)
        return cursor

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("launch writer failed: %r", task.exception())

    async def _write_rest(self, cursor: LaunchCursor) -> None:
        loop = asyncio.get_running_loop()
        with campaign_context(cursor.campaign_id):
            failing_since: float | None = None
            try:
                while not cursor.done:
                    try:
                        cursor = await self.store.continue_launch(cursor, self.chunk)
                        failing_since = None
                    except LaunchStopped as exc:
                        log.warning("launch stopped after %d of %d recipients: %s",
                                    cursor.written, cursor.requested, exc.why)
                        return
                    except Exception as exc:  # the database is away: retry, then give up
                        now = loop.time()
                        failing_since = failing_since if failing_since is not None else now
                        if now - failing_since >= self.give_up_s:
                            await self._fail(cursor, f"chunk not written for "
                                                     f"{self.give_up_s:g} s: {exc!r}")
                            return
                        log.warning("launch chunk failed, retrying: %s", exc)
                        await asyncio.sleep(self.retry_s)
                log.info("launch written: %d recipients", cursor.written)
            except asyncio.CancelledError:
                await self._fail(cursor, "the node stopped before the launch was written")
                raise

    async def _fail(self, cursor: LaunchCursor, why: str) -> None:
        reason = f"{why} ({cursor.written} of {cursor.requested} recipients written)"
        try:
            await asyncio.shield(self.store.fail_launch(cursor.campaign_id, self.node, reason))
        except Exception as exc:  # the watchdog fails it once this node is gone
            log.error("could not mark the launch failed: %r", exc)
            return
        log.error("launch failed: %s", reason)

    async def close(self, deadline_s: float = 10.0) -> None:
        """Let running launches finish for ``deadline_s``, then cancel (and fail) them."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=deadline_s)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
