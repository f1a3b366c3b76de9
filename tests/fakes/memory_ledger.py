"""An in-memory :class:`~failover.evidence.ledger.Ledger` for unit tests: the same entry bytes
and hashes as the database trigger of migration 0005 (``failover/evidence/entry.py``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from failover.evidence.entry import EPOCH, GENESIS_PREV, Entry, entry_data, event_payload
from failover.evidence.ledger import Ledger, StoredCheckpoint
from failover.evidence.merkle import leaf_hash

_US = timedelta(microseconds=1)


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryLedger:
    def __init__(self, clock: Callable[[], datetime] = _now) -> None:
        self.clock = clock
        self.items: list[Entry] = []
        self.stored: dict[int, StoredCheckpoint] = {}

    def append_payload(self, payload: bytes, at_us: int | None = None) -> Entry:
        """Append as the trigger does (``at_us`` given: a copy of another ledger's entry)."""
        if at_us is None:
            at_us = (self.clock() - EPOCH) // _US
        if self.items:
            at_us = max(at_us, self.items[-1].at_us)
        seq = len(self.items)
        prev = self.items[-1].hash if self.items else GENESIS_PREV
        entry = Entry(seq, at_us, prev, payload, leaf_hash(entry_data(seq, at_us, prev, payload)))
        self.items.append(entry)
        return entry

    async def append(self, kind: str, sentence: str, *, actor: str, node: str, site: str,
                     campaign_id: int | None = None,
                     details: Mapping[str, Any] | None = None) -> int:
        return self.append_payload(event_payload(
            kind, sentence, actor=actor, node=node, site=site, campaign_id=campaign_id,
            details=details)).seq

    async def size(self) -> int:
        return len(self.items)

    async def entries(self, start: int, end: int) -> list[Entry]:
        return self.items[max(0, start):max(0, end)]

    async def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        return [e.hash for e in self.items[max(0, start):max(0, end)]]

    async def seq_range(self, since: datetime | None,
                        until: datetime | None) -> tuple[int, int]:
        seqs = [e.seq for e in self.items if (since is None or e.at >= since)
                and (until is None or e.at < until)]
        return (seqs[0], seqs[-1] + 1) if seqs else (0, 0)

    async def last_of_kind(self, kind: str, **match: str) -> Entry | None:
        for e in reversed(self.items):
            doc = e.doc()
            details = doc.get("details") or {}
            if doc.get("kind") == kind and all(details.get(k) == v for k, v in match.items()):
                return e
        return None

    async def of_kind(self, kind: str, limit: int = 1000, **match: str) -> list[Entry]:
        out = []
        for e in self.items:
            doc = e.doc()
            details = doc.get("details") or {}
            if doc.get("kind") == kind and all(details.get(k) == v for k, v in match.items()):
                out.append(e)
                if len(out) >= limit:
                    break
        return out

    async def add_checkpoint(self, size: int, root: bytes, note: str) -> bool:
        if size in self.stored:
            return False
        self.stored[size] = StoredCheckpoint(size, root, note)
        return True

    async def checkpoints(self) -> list[StoredCheckpoint]:
        return [self.stored[s] for s in sorted(self.stored)]


def _conforms(ledger: MemoryLedger) -> Ledger:
    return ledger
