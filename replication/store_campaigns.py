"""The campaign store's campaigns: launch, state, summaries and per-recipient outcomes."""

from __future__ import annotations

from typing import Any, cast

from replication.store_api import (
    CampaignState,
    CampaignSummary,
    Channel,
    InvalidInput,
    NotFound,
    RecipientOutcome,
    RecipientState,
)
from replication.store_base import Conn, StoreBase
from replication.store_codec import (
    MAX_BATCH_SIZE,
    MAX_POPULATION,
    UnknownName,
    check_name,
    check_page,
)

CAMPAIGN_STATES: tuple[CampaignState, ...] = ("running", "paused", "completed", "cancelled")
# The transitions an operator may ask for; "completed" is reached only by finishing the last
# batch. Asking for the state a campaign is already in is a no-op (a retried request).
TRANSITIONS: frozenset[tuple[str, str]] = frozenset({
    ("running", "paused"), ("paused", "running"),
    ("running", "cancelled"), ("paused", "cancelled"),
})

# Synthetic population: "Test 000001", +336390000001 (phone and mobile), test-1@example.invalid.
# Recipient ids follow the order of the population (or of the contacts).
_POPULATION = """
INSERT INTO recipients (campaign_id, batch_id, name, phone, mobile, email, language)
SELECT %(c)s, b.id,
       'Test ' || CASE WHEN g.n < 1000000 THEN lpad(g.n::text, 6, '0') ELSE g.n::text END,
       '+33639' || lpad(g.n::text, 7, '0'), '+33639' || lpad(g.n::text, 7, '0'),
       'test-' || g.n || '@example.invalid', 'fr'
  FROM generate_series(1, %(n)s) AS g(n)
  JOIN batches b ON b.campaign_id = %(c)s AND b.seq = (g.n - 1) / %(bs)s
 ORDER BY g.n
"""

# A snapshot of the group's contacts, in contact order.
_GROUP = """
INSERT INTO recipients (campaign_id, batch_id, contact_id, name, phone, mobile, email, language)
SELECT %(c)s, b.id, s.id, s.name, s.phone, s.mobile, s.email, s.language
  FROM (SELECT ct.id, ct.name, ct.phone, ct.mobile, ct.email, ct.language,
               row_number() OVER (ORDER BY ct.id) - 1 AS k
          FROM contacts ct JOIN group_members m ON m.contact_id = ct.id
         WHERE m.group_id = %(g)s) AS s
  JOIN batches b ON b.campaign_id = %(c)s AND b.seq = s.k / %(bs)s
 ORDER BY s.k
"""

_SUMMARY_HEAD = """
SELECT c.id, s.name, c.state, c.launched_by, c.recipients, c.launched_at, c.completed_at
  FROM campaigns c JOIN scenarios s ON s.id = c.scenario_id
"""


def _count(value: object, field: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise InvalidInput(field, f"must be an integer from 1 to {high}")
    return value


class CampaignPart(StoreBase):
    async def launch_campaign(
        self, scenario: str, launched_by: str, *, group: str | None = None,
        population: int | None = None, batch_size: int = 100,
    ) -> int:
        """Write the campaign, its recipients and its batches in one transaction (REPEATABLE
        READ: the group's members are read from one snapshot). ``population=N`` makes N
        synthetic recipients in SQL; ``group=`` snapshots the group's contacts. An unknown
        scenario or group raises UnknownName (both InvalidInput and NotFound)."""
        launched_by = check_name("launched_by", launched_by)
        if (group is None) == (population is None):
            raise InvalidInput("group", "give either a group or a population, exactly one")
        if population is not None:
            _count(population, "population", MAX_POPULATION)
        _count(batch_size, "batch_size", MAX_BATCH_SIZE)
        async with self._tx() as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur = await conn.execute("SELECT id, priority FROM scenarios WHERE name = %s",
                                     (scenario,))
            srow = await cur.fetchone()
            if srow is None:
                raise UnknownName("scenario", f"no scenario named {scenario!r}")
            group_id: int | None = None
            if group is not None:
                cur = await conn.execute(
                    "SELECT g.id, (SELECT count(*) FROM group_members m WHERE m.group_id = g.id)"
                    " FROM groups g WHERE g.name = %s", (group,))
                grow = await cur.fetchone()
                if grow is None:
                    raise UnknownName("group", f"no group named {group!r}")
                group_id, n = int(grow[0]), int(grow[1])
                if n == 0:
                    raise InvalidInput("group", f"group {group!r} has no contact")
            else:
                n = cast(int, population)
            cur = await conn.execute(
                "INSERT INTO campaigns (scenario_id, priority, launched_by, group_id, recipients,"
                " batch_size) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (srow[0], srow[1], launched_by, group_id, n, batch_size))
            crow = await cur.fetchone()
            assert crow is not None
            campaign_id = int(crow[0])
            params = {"c": campaign_id, "n": n, "bs": batch_size, "g": group_id}
            await conn.execute(
                "INSERT INTO batches (campaign_id, seq, recipients) "
                "SELECT %(c)s, s, least(%(bs)s, %(n)s - s * %(bs)s) "
                "FROM generate_series(0, (%(n)s - 1) / %(bs)s) AS s", params)
            cur = await conn.execute(_GROUP if group is not None else _POPULATION, params)
            if cur.rowcount != n:  # cannot happen in one snapshot; refuse rather than lose any
                raise InvalidInput("group", f"expected {n} recipients, wrote {cur.rowcount}")
        return campaign_id

    async def set_campaign_state(self, campaign_id: int, state: CampaignState) -> None:
        """running <-> paused, running/paused -> cancelled; nothing leaves completed or
        cancelled (InvalidInput 'state'). The current state again is a no-op."""
        if state not in CAMPAIGN_STATES:
            raise InvalidInput("state", f"must be one of {', '.join(CAMPAIGN_STATES)}")
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT state FROM campaigns WHERE id = %s FOR NO KEY UPDATE", (campaign_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"campaign {campaign_id} not found")
            current = str(row[0])
            if current == state:
                return
            if (current, state) not in TRANSITIONS:
                raise InvalidInput("state", f"a {current} campaign cannot become {state}")
            await conn.execute(
                "UPDATE campaigns SET state = %(s)s, completed_at = CASE WHEN %(s)s = 'cancelled'"
                " THEN now() ELSE completed_at END WHERE id = %(id)s",
                {"s": state, "id": campaign_id})

    async def campaign_summary(self, campaign_id: int) -> CampaignSummary:
        async with self._tx() as conn:
            summaries = await _summaries(conn, _SUMMARY_HEAD + " WHERE c.id = %s", (campaign_id,))
        if not summaries:
            raise NotFound(f"campaign {campaign_id} not found")
        return summaries[0]

    async def list_campaigns(self, limit: int = 50) -> list[CampaignSummary]:
        """The most recent campaigns first."""
        check_page(limit, 0)
        async with self._tx() as conn:
            return await _summaries(conn, _SUMMARY_HEAD + " ORDER BY c.id DESC LIMIT %s",
                                    (limit,))

    async def recipient_outcomes(
        self, campaign_id: int, limit: int = 100, offset: int = 0,
    ) -> list[RecipientOutcome]:
        """Each recipient's final outcome (or pending), in batch order then recipient id."""
        check_page(limit, offset)
        async with self._tx() as conn:
            cur = await conn.execute("SELECT 1 FROM campaigns WHERE id = %s", (campaign_id,))
            if await cur.fetchone() is None:
                raise NotFound(f"campaign {campaign_id} not found")
            cur = await conn.execute(
                "SELECT r.id, r.name, r.state, r.final_channel, r.final_site, r.final_reference,"
                " r.final_at FROM batches b JOIN recipients r ON r.batch_id = b.id"
                " WHERE b.campaign_id = %s ORDER BY b.seq, r.id LIMIT %s OFFSET %s",
                (campaign_id, limit, offset))
            rows = await cur.fetchall()
        return [RecipientOutcome(recipient_id=int(r[0]), name=str(r[1]),
                                 state=cast(RecipientState, r[2]),
                                 channel=cast("Channel | None", r[3]), site=r[4],
                                 reference=r[5], at=r[6]) for r in rows]


async def _summaries(conn: Conn, head: str, params: tuple[Any, ...]) -> list[CampaignSummary]:
    cur = await conn.execute(head, params)
    heads = await cur.fetchall()
    if not heads:
        return []
    cur = await conn.execute(
        "SELECT b.campaign_id, r.state, r.final_site, count(*)"
        " FROM batches b JOIN recipients r ON r.batch_id = b.id"
        " WHERE b.campaign_id = ANY(%s::bigint[]) AND r.state <> 'pending'"
        " GROUP BY b.campaign_id, r.state, r.final_site", ([h[0] for h in heads],))
    counts: dict[int, dict[str, int]] = {}
    sites: dict[int, dict[str, int]] = {}
    for cid, state, site, n in await cur.fetchall():
        per = counts.setdefault(cid, {})
        per[state] = per.get(state, 0) + n
        if state in ("delivered", "acknowledged") and site is not None:
            by_site = sites.setdefault(cid, {})
            by_site[site] = by_site.get(site, 0) + n
    out = []
    for cid, scenario, state, launched_by, recipients, launched_at, completed_at in heads:
        per = counts.get(cid, {})
        delivered = per.get("delivered", 0)
        acknowledged = per.get("acknowledged", 0)
        failed = per.get("failed", 0)
        out.append(CampaignSummary(
            id=cid, scenario=scenario, state=state, launched_by=launched_by,
            recipients=recipients, delivered=delivered, acknowledged=acknowledged, failed=failed,
            pending=recipients - delivered - acknowledged - failed, started_at=launched_at,
            completed_at=completed_at, by_site=dict(sorted(sites.get(cid, {}).items()))))
    return out
