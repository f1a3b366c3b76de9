"""The safety lever and the one-drill lock, as coordination keys (under ``/tenir/<cluster>/``):

* ``drill/active``: the running drill (run id, kind, runner, host, heartbeat), created only if
  absent: a second drill is refused while one runs. The runner refreshes its heartbeat; a lock
  whose heartbeat is older than ``STALE_S`` (a runner that died) may be taken over, and the
  refusal says so;
* ``drill/abort``: ``{run, by, reason, at}``, written by ``tenir drill abort`` from any terminal
  (straight to the coordination service, as ``tenir site drain`` does) or by a node for
  ``POST /api/v1/drills/abort``. The running drill reads it every second; one that names its run
  (or no run) stops it: the drill heals and records "aborted" with the reason.

The coordination service keeps its quorum through every shipped drill (the preflight demands a
spare member), which is why the lever lives there and not in PostgreSQL, whose primary a drill
may take away.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cluster.coordination.base import Coordinator

ACTIVE_KEY = "drill/active"
ABORT_KEY = "drill/abort"
STALE_S = 60.0


class DrillBusy(RuntimeError):
    pass


@dataclass(frozen=True)
class AbortRequest:
    run: str | None
    by: str
    reason: str
    at: str

    def sentence(self) -> str:
        return f"aborted by {self.by}: {self.reason}"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _load(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Lever:
    """The keys on one connected coordinator (the caller owns and closes it)."""

    def __init__(self, coordinator: Coordinator, clock: Any = time.time) -> None:
        self.coordinator = coordinator
        self.clock = clock

    async def active(self) -> dict[str, Any] | None:
        got = await self.coordinator.get(ACTIVE_KEY)
        return None if got is None else _load(got.value)

    async def acquire(self, run: str, kind: str, runner: str, host: str) -> str | None:
        """Take the lock for ``run``; returns a note when a stale lock was taken over. Clears an
        abort left from before (no drill was running: it stops nothing). Raises
        :class:`DrillBusy` naming the drill that runs."""
        value = {"run": run, "drill": kind, "runner": runner, "host": host,
                 "started_at": _now_iso(), "heartbeat": self.clock()}
        note = None
        current = await self.coordinator.get(ACTIVE_KEY)
        if current is not None:
            held = _load(current.value)
            age = self.clock() - float(held.get("heartbeat", 0) or 0)
            if age < STALE_S:
                raise DrillBusy(f"drill {held.get('run')} ({held.get('drill')}) is running, "
                                f"started {held.get('started_at')} by {held.get('runner')} on "
                                f"{held.get('host')}: one drill at a time")
            if not await self.coordinator.compare_and_set(ACTIVE_KEY, json.dumps(value).encode(),
                                                          current.version):
                raise DrillBusy("another drill took the lock at the same moment")
            note = (f"took over the lock of drill {held.get('run')}, whose runner has not "
                    f"answered for {age:.0f} s")
        elif not await self.coordinator.compare_and_set(ACTIVE_KEY, json.dumps(value).encode(),
                                                        None):
            raise DrillBusy("another drill took the lock at the same moment")
        await self.coordinator.delete(ABORT_KEY)
        return note

    async def heartbeat(self, run: str) -> None:
        current = await self.coordinator.get(ACTIVE_KEY)
        if current is None:
            return
        held = _load(current.value)
        if held.get("run") != run:
            return
        held["heartbeat"] = self.clock()
        await self.coordinator.compare_and_set(ACTIVE_KEY, json.dumps(held).encode(),
                                               current.version)

    async def release(self, run: str) -> None:
        current = await self.coordinator.get(ACTIVE_KEY)
        if current is not None and _load(current.value).get("run") == run:
            await self.coordinator.delete(ACTIVE_KEY)
        abort = await self.requested()
        if abort is not None and abort.run in (None, run):
            await self.coordinator.delete(ABORT_KEY)

    async def request_abort(self, by: str, reason: str, run: str | None = None) -> AbortRequest:
        """Pull the lever. Without ``run`` it stops whichever drill runs."""
        request = AbortRequest(run, by, reason, _now_iso())
        value = {"run": run, "by": by, "reason": reason, "at": request.at}
        await self.coordinator.delete(ABORT_KEY)
        await self.coordinator.compare_and_set(ABORT_KEY, json.dumps(value).encode(), None)
        return request

    async def requested(self) -> AbortRequest | None:
        got = await self.coordinator.get(ABORT_KEY)
        if got is None:
            return None
        v = _load(got.value)
        return AbortRequest(v.get("run"), str(v.get("by", "?")), str(v.get("reason", "")),
                            str(v.get("at", "")))

    async def aborts(self, run: str) -> AbortRequest | None:
        """The abort request that stops ``run``, if any."""
        request = await self.requested()
        return request if request is not None and request.run in (None, run) else None
