"""Events (what the watchdog and operators did: entries of the continuity ledger) and the view
of who holds which batches."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from failover.evidence.entry import event_payload
from replication.store_api import Event, InvalidInput
from replication.store_base import StoreBase
from replication.store_codec import check_name

EVENT_KIND = re.compile(r"[a-z][a-z0-9_.]*\Z")  # the ledger's CHECK (migrations 0003, 0005)


def check_event_kind(kind: object) -> None:
    if not isinstance(kind, str) or not EVENT_KIND.match(kind):
        raise InvalidInput("kind", "must be lower-case words joined by dots or underscores "
                           "(watchdog.move)")


class EventsPart(StoreBase):
    async def batches_in_flight(self) -> dict[str, int]:
        """Claimed batches per owner node."""
        async with self._tx() as conn:
            cur = await conn.execute("SELECT owner, count(*) FROM batches"
                                     " WHERE state = 'claimed' GROUP BY owner")
            return {str(owner): int(n) for owner, n in await cur.fetchall()}

    async def owner_sites(self) -> dict[str, str]:
        """Per node holding claimed batches, the site it claimed them for (a node's site does
        not change; nodes that claimed without a site are left out)."""
        async with self._tx() as conn:
            cur = await conn.execute("SELECT owner, max(owner_site) FROM batches"
                                     " WHERE state = 'claimed' AND owner_site IS NOT NULL"
                                     " GROUP BY owner")
            return {str(owner): str(site) for owner, site in await cur.fetchall()}

    async def batches_in_flight_by_campaign(self) -> dict[int, dict[str, int]]:
        """Claimed batches per campaign and owner node (the operators' cluster view)."""
        async with self._tx() as conn:
            cur = await conn.execute("SELECT campaign_id, owner, count(*) FROM batches"
                                     " WHERE state = 'claimed' GROUP BY campaign_id, owner")
            out: dict[int, dict[str, int]] = {}
            for campaign, owner, n in await cur.fetchall():
                out.setdefault(int(campaign), {})[str(owner)] = int(n)
            return out

    async def record_event(self, kind: str, sentence: str, node: str, site: str,
                           campaign_id: int | None = None,
                           details: Mapping[str, Any] | None = None,
                           actor: str | None = None) -> int:
        """Append to the continuity ledger (migration 0005: the database chains it); returns
        the entry's sequence number. ``actor`` is who did it (default ``node:<node>``)."""
        check_event_kind(kind)
        check_name("node", node)
        check_name("site", site)
        payload = event_payload(kind, sentence, actor=actor or f"node:{node}", node=node,
                                site=site, campaign_id=campaign_id, details=details)
        async with self._tx() as conn:
            cur = await conn.execute("INSERT INTO ledger (payload) VALUES (%s) RETURNING seq",
                                     (payload,))
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def list_events(self, limit: int = 100) -> list[Event]:
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT id, at, kind, node, site, campaign_id, sentence, details, actor"
                " FROM events ORDER BY id DESC LIMIT %s", (max(1, min(limit, 10_000)),))
            rows = await cur.fetchall()
        return [Event(id=r[0], at=r[1], kind=r[2], node=r[3] or "", site=r[4] or "",
                      campaign_id=r[5], sentence=r[6] or "", details=dict(r[7]),
                      actor=r[8] or "") for r in rows]
