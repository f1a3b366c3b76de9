"""What the store's integration tests share: small scenarios, outcomes, raw SQL look-ups."""

from __future__ import annotations

from typing import Any

import psycopg

from replication.store_api import (
    AttemptState,
    Channel,
    ChannelStep,
    ClaimedBatch,
    Outcome,
    Recipient,
    ScenarioIn,
)
from replication.store_codec import pack_outcomes

AConn = psycopg.AsyncConnection[tuple[Any, ...]]


def sms_scenario(name: str = "flood", priority: int = 5) -> ScenarioIn:
    return ScenarioIn(name=name, priority=priority, steps=(
        ChannelStep("sms", {"fr": "Crue: evacuez", "en": "Flood: evacuate"}, retries=1),
        ChannelStep("voice", {"fr": "Crue"}, ack="dtmf", ack_timeout_s=30),
    ))


def outcome(r: Recipient | int, campaign_id: int, *, state: AttemptState = "delivered",
            final: bool = True, site: str = "paris", channel: Channel = "sms", step: int = 0,
            attempt: int = 0, cmid: str | None = None) -> Outcome:
    rid = r if isinstance(r, int) else r.id
    return Outcome(recipient_id=rid, channel=channel, carrier=f"sim-{channel}",
                   reference=f"{campaign_id}:{rid}:{channel}:{attempt}", state=state, step=step,
                   attempt=attempt, final=final, site=site, carrier_message_id=cmid)


def finals(batch: ClaimedBatch, state: AttemptState = "delivered",
           site: str = "paris") -> list[Outcome]:
    return [outcome(r, batch.campaign_id, state=state, site=site) for r in batch.recipients]


async def scalar(conn: AConn, query: str, *params: Any) -> Any:
    cur = await conn.execute(query.encode(), params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def table_counts(conn: AConn) -> dict[str, int]:
    out = {}
    for t in ("campaigns", "batches", "recipients", "attempts", "receipts", "acknowledgements",
              "fencing_rejections"):
        out[t] = int(await scalar(conn, f"SELECT count(*) FROM {t}"))
    return out


async def raw_record(conn: AConn, batch_id: int, epoch: int, node: str,
                     outcomes: list[Outcome]) -> str:
    """Call the server-side function directly, as a client bypassing the store would."""
    p = pack_outcomes(outcomes)
    placeholders = ", ".join(["%s"] * (3 + len(p.attempts) + len(p.recipients)))
    casts = ("text[]", "bigint[]", "text[]", "text[]", "text[]", "text[]", "int[]", "int[]",
             "text[]", "text[]", "timestamptz[]", "bigint[]", "int[]", "int[]", "text[]",
             "text[]", "text[]", "text[]", "timestamptz[]")
    parts = placeholders.split(", ")
    typed = parts[:3] + [f"{ph}::{c}" for ph, c in zip(parts[3:], casts, strict=True)]
    query = f"SELECT tenir_record_outcomes({', '.join(typed)})"
    return str(await scalar(conn, query, batch_id, epoch, node, *p.attempts, *p.recipients))
