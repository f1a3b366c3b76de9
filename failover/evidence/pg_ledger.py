"""The continuity ledger on PostgreSQL (tables of migration 0005), on the campaign store's pool.

Appending is one INSERT of the payload: the database's trigger numbers, timestamps and chains
it under the row lock of ``ledger_head``, so appends from every node form one chain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from failover.evidence.entry import Entry, event_payload
from failover.evidence.ledger import Ledger, StoredCheckpoint

_ENTRY = "SELECT seq, at_us, prev_hash, payload, entry_hash FROM ledger"


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(seq=int(row[0]), at_us=int(row[1]), prev=bytes(row[2]), payload=bytes(row[3]),
                 hash=bytes(row[4]))


class PgLedger:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def append(self, kind: str, sentence: str, *, actor: str, node: str, site: str,
                     campaign_id: int | None = None,
                     details: Mapping[str, Any] | None = None) -> int:
        payload = event_payload(kind, sentence, actor=actor, node=node, site=site,
                                campaign_id=campaign_id, details=details)
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute("INSERT INTO ledger (payload) VALUES (%s) RETURNING seq",
                                     (payload,))
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def size(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM ledger")
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def entries(self, start: int, end: int) -> list[Entry]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"{_ENTRY} WHERE seq >= %s AND seq < %s ORDER BY seq",
                                     (start, end))
            return [_entry(r) for r in await cur.fetchall()]

    async def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT entry_hash FROM ledger WHERE seq >= %s AND seq < %s"
                                     " ORDER BY seq", (start, end))
            return [bytes(r[0]) for r in await cur.fetchall()]

    async def seq_range(self, since: datetime | None,
                        until: datetime | None) -> tuple[int, int]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT coalesce(min(seq), 0), coalesce(max(seq) + 1, 0) FROM ledger"
                " WHERE (%(since)s::timestamptz IS NULL OR at >= %(since)s)"
                " AND (%(until)s::timestamptz IS NULL OR at < %(until)s)",
                {"since": since, "until": until})
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    async def last_of_kind(self, kind: str, **match: str) -> Entry | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"{_ENTRY} WHERE kind = %s AND doc->'details' @> %s::jsonb"
                " ORDER BY seq DESC LIMIT 1", (kind, _json(match)))
            row = await cur.fetchone()
        return _entry(row) if row else None

    async def of_kind(self, kind: str, limit: int = 1000, **match: str) -> list[Entry]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"{_ENTRY} WHERE kind = %s AND doc->'details' @> %s::jsonb"
                " ORDER BY seq LIMIT %s", (kind, _json(match), limit))
            return [_entry(r) for r in await cur.fetchall()]

    async def add_checkpoint(self, size: int, root: bytes, note: str) -> bool:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO ledger_checkpoints (size, root, note) VALUES (%s, %s, %s)"
                " ON CONFLICT (size) DO NOTHING RETURNING size", (size, root, note))
            return await cur.fetchone() is not None

    async def checkpoints(self) -> list[StoredCheckpoint]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT size, root, note FROM ledger_checkpoints ORDER BY size")
            return [StoredCheckpoint(int(r[0]), bytes(r[1]), str(r[2]))
                    for r in await cur.fetchall()]


def _json(value: Mapping[str, str]) -> str:
    return json.dumps(dict(value))


def _conforms(ledger: PgLedger) -> Ledger:
    return ledger
