"""The continuity ledger's contract: what the checkpointer, the API, the records and the export
use. ``failover/evidence/pg_ledger.py`` implements it on PostgreSQL (the chain is made by the
database, migration 0005); ``tests/fakes/memory_ledger.py`` in memory, with the same bytes.

* ``append`` adds one entry (kind, sentence, who did it) and returns its sequence number;
  entries are numbered 0, 1, 2... without gaps; appending is the only write.
* ``entries(start, end)`` returns the entries with ``start <= seq < end`` in order;
  ``leaf_hashes`` only their hashes (what the tree needs).
* ``seq_range(since, until)`` is the [start, end) of the entries appended in that time span.
* ``last_of_kind`` / ``of_kind``: the latest entry (the first ``limit``, in order) of a kind
  whose details hold every ``match`` key with that string value.
* checkpoints are stored once per size (a second one of the same size is ignored: False).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from failover.evidence.entry import Entry


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str  # the signed note: site signature and witness cosignature


class Ledger(Protocol):
    async def append(self, kind: str, sentence: str, *, actor: str, node: str, site: str,
                     campaign_id: int | None = None,
                     details: Mapping[str, Any] | None = None) -> int: ...
    async def size(self) -> int: ...
    async def entries(self, start: int, end: int) -> list[Entry]: ...
    async def leaf_hashes(self, start: int, end: int) -> list[bytes]: ...
    async def seq_range(self, since: datetime | None,
                        until: datetime | None) -> tuple[int, int]: ...
    async def last_of_kind(self, kind: str, **match: str) -> Entry | None: ...
    async def of_kind(self, kind: str, limit: int = 1000, **match: str) -> list[Entry]: ...
    async def add_checkpoint(self, size: int, root: bytes, note: str) -> bool: ...
    async def checkpoints(self) -> list[StoredCheckpoint]: ...
