"""The campaign store's campaigns: state, summaries and per-recipient outcomes."""

from __future__ import annotations

from collections.abc import Sequence
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
    check_page,
)

CAMPAIGN_STATES: tuple[CampaignState, ...] = ("running", "paused", "completed", "cancelled",
                                              "failed")
# The transitions an operator may ask for; "completed" is reached only by finishing the last
# batch, "failed" only by a launch that could not be written to its end. Asking for the state a
# campaign is already in is a no-op (a retried request).
TRANSITIONS: frozenset[tuple[str, str]] = frozenset({
    ("running", "paused"), ("paused", "running"),
    ("running", "cancelled"), ("paused", "cancelled"),
})


def check_states(states: Sequence[str] | None) -> None:
    """InvalidInput('state') names the first state that is not a campaign state."""
    for state in states or ():
        if state not in CAMPAIGN_STATES:
            raise InvalidInput("state", f"{state!r} is not one of {', '.join(CAMPAIGN_STATES)}")

_SUMMARY_HEAD = """
SELECT c.id, s.name, c.state, c.launched_by, c.recipients, c.launched_at, c.completed_at,
       c.launch_state, c.requested, c.launch_error
  FROM campaigns c JOIN scenarios s ON s.id = c.scenario_id
"""


class CampaignPart(StoreBase):
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

    async def list_campaigns(self, limit: int = 50,
                             states: Sequence[CampaignState] | None = None,
                             ) -> list[CampaignSummary]:
        """The most recent campaigns first; with ``states``, only campaigns in one of them (the
        running ones are found however many finished campaigns came after them)."""
        check_page(limit, 0)
        check_states(states)
        wanted = None if states is None else list(states)
        async with self._tx() as conn:
            return await _summaries(
                conn, _SUMMARY_HEAD + " WHERE %(s)s::text[] IS NULL OR c.state = ANY(%(s)s)"
                " ORDER BY c.id DESC LIMIT %(n)s", {"s": wanted, "n": limit})

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


async def _summaries(conn: Conn, head: str, params: tuple[Any, ...] | dict[str, Any]
                     ) -> list[CampaignSummary]:
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
    for (cid, scenario, state, launched_by, recipients, launched_at, completed_at, launch_state,
         requested, launch_error) in heads:
        per = counts.get(cid, {})
        delivered = per.get("delivered", 0)
        acknowledged = per.get("acknowledged", 0)
        failed = per.get("failed", 0)
        out.append(CampaignSummary(
            id=cid, scenario=scenario, state=state, launched_by=launched_by,
            recipients=recipients, delivered=delivered, acknowledged=acknowledged, failed=failed,
            pending=recipients - delivered - acknowledged - failed, started_at=launched_at,
            completed_at=completed_at, by_site=dict(sorted(sites.get(cid, {}).items())),
            launch_state=launch_state, requested=requested if requested is not None
            else recipients, launch_error=launch_error))
    return out
