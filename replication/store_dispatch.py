"""The campaign store's dispatch side: claims, fenced outcome writes, receipts, acknowledgements.

Fencing is decided by the database (``tenir_fence`` in migrations/0002): a stale caller's write
is refused there and the refusal recorded in ``fencing_rejections`` in the same transaction; the
function returns 'stale' instead of raising (a raise would roll the record back), the
transaction commits, and only then is :class:`StaleEpoch` raised here.

Conventions the dispatcher relies on:

* ``Outcome.step`` and ``Outcome.attempt`` are 0-based. Recording attempt ``k`` of step ``s``
  moves the recipient to (step ``s``, attempt ``k + 1``) unless it is already further:
  ``claim_batch`` hands back ``Recipient.attempt`` as "attempts already made on that step".
* The first final outcome of a recipient wins; later final outcomes are kept as attempts but do
  not replace it. Only an acknowledgement upgrades a final outcome (to acknowledged).
* Receipts and acknowledgements may arrive before the outcome that records their attempt: they
  are kept and applied when the attempt is recorded, if the caller says its dispatcher waits on
  that reference (``in_flight``); otherwise nothing is stored (migrations/0007).
* ``finish_batch`` refuses (InvalidInput 'batch_id') while recipients of the batch are pending,
  unless the campaign was cancelled: finishing would lose them. Finishing again with the same
  claim is a no-op (a retry after a lost reply).
* ``claim_batch`` also takes over a claimed batch whose lease has expired (its epoch grows, so
  the late holder's writes are refused), not only pending ones.
* Same-site takeover (``tenir_claim_batch`` in migrations/0004): ``reassign_batches`` may reserve
  a dead node's batches for its site for a hold measured on the database's clock, so that every
  node compares against one clock; ``claim_batch`` with another site skips them until then.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, cast

import psycopg

from replication.store_api import (
    MAX_HOLD_S,
    AckVerdict,
    AttemptState,
    ClaimedBatch,
    InvalidInput,
    Outcome,
    ReceiptVerdict,
    Recipient,
    Scenario,
    StaleEpoch,
)
from replication.store_base import StoreBase, db_error
from replication.store_codec import check_name, pack_outcomes, steps_from_json

MAX_LEASE_S = 3600.0
RECEIPT_STATES = ("sent", "delivered", "failed")

# One statement, so that the server commits the claim as it ends: a node cut off while its claim
# is in flight leaves no open transaction holding the batch's row (see StoreBase._statement).
# The claimed batch comes back once per pending recipient (one row with NULL recipient columns
# when none is pending). The recipients are read per claimed batch (LATERAL, and the claim
# function declared ROWS 1 in migrations/0008): a plan joining them by hash scanned the whole
# table on every claim while its statistics were stale. The scenario's steps come as text, decoded
# once: as jsonb, every row's copy was decoded (100 per claim, 1.3 % of a node's CPU).
_CLAIM = """
WITH k AS MATERIALIZED (SELECT * FROM tenir_claim_batch(%s, %s, %s))
SELECT k.out_batch_id, k.out_campaign_id, k.out_epoch, k.out_lease_until,
       s.id, s.name, s.priority, s.steps::text,
       r.id, r.campaign_id, r.name, r.phone, r.mobile, r.email, r.language, r.step, r.attempt
  FROM k
  JOIN campaigns c ON c.id = k.out_campaign_id
  JOIN scenarios s ON s.id = c.scenario_id
  LEFT JOIN LATERAL (SELECT * FROM recipients x
                      WHERE x.batch_id = k.out_batch_id AND x.state = 'pending') r ON true
 ORDER BY r.id
"""

_RECORD = "SELECT tenir_record_outcomes_json(%s, %s, %s, %s::jsonb, %s::jsonb)"


# The watchdog's move, and its 'move' rows in the claim log (migrations/0006), in one statement.
_REASSIGN = """
WITH moved AS (
    UPDATE batches SET state = 'pending', owner = NULL, owner_site = NULL, lease_until = NULL,
           reserved_site = %s::text,
           reserved_until = CASE WHEN %s::text IS NULL THEN NULL
                            ELSE now() + make_interval(secs => %s) END
     WHERE state = 'claimed' AND owner = %s
    RETURNING id, epoch
), logged AS (
    INSERT INTO claim_log (kind, batch_id, epoch, node, site, current_epoch)
    SELECT 'move', id, epoch, %s, %s::text, epoch FROM moved
)
SELECT count(*) FROM moved
"""


def _lease(lease_s: float) -> float:
    if isinstance(lease_s, bool) or not isinstance(lease_s, int | float) \
            or not math.isfinite(lease_s) or not 0 < lease_s <= MAX_LEASE_S:
        raise InvalidInput("lease_s", f"must be a number of seconds in (0, {MAX_LEASE_S:g}]")
    return float(lease_s)


def _hold(hold_s: float) -> float:
    if isinstance(hold_s, bool) or not isinstance(hold_s, int | float) \
            or not math.isfinite(hold_s) or not 0 <= hold_s <= MAX_HOLD_S:
        raise InvalidInput("hold_s", f"must be a number of seconds in [0, {MAX_HOLD_S:g}]")
    return float(hold_s)


def _fenced_args(batch_id: int, epoch: int, node: str) -> None:
    for name, value in (("batch_id", batch_id), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(name, "must be an integer >= 0")
    check_name("node", node)


class DispatchPart(StoreBase):
    async def claim_batch(self, node: str, lease_s: float,
                          site: str | None = None) -> ClaimedBatch | None:
        """Claim one batch (SKIP LOCKED; campaign priority, then age), or None if none is
        claimable. Returns its recipients still pending, with where they stand. A batch
        reserved for another site than ``site`` is skipped until its hold ends; ``site=None``
        takes reserved batches too."""
        node = check_name("node", node)
        lease = _lease(lease_s)
        if site is not None:
            site = check_name("site", site)
        async with self._statement() as conn:
            cur = await conn.execute(_CLAIM, (node, lease, site))
            rows = await cur.fetchall()
        if not rows:
            return None
        batch_id, campaign_id, epoch, lease_until, sid, sname, sprio, steps = rows[0][:8]
        recipients = tuple(Recipient(id=r[0], campaign_id=r[1], name=r[2], phone=r[3],
                                     mobile=r[4], email=r[5], language=r[6], step=r[7],
                                     attempt=r[8]) for row in rows if (r := row[8:])[0] is not None)
        scenario = Scenario(id=sid, name=sname, priority=sprio,
                            steps=steps_from_json(json.loads(steps)))
        return ClaimedBatch(id=batch_id, campaign_id=campaign_id, epoch=epoch, node=node,
                            lease_until=lease_until, scenario=scenario, recipients=recipients)

    async def renew_batch(self, batch_id: int, epoch: int, node: str, lease_s: float) -> None:
        _fenced_args(batch_id, epoch, node)
        lease = _lease(lease_s)
        row = await self._call("SELECT tenir_renew_batch(%s, %s, %s, %s)",
                               (batch_id, epoch, node, lease))
        if row is None:
            raise StaleEpoch(batch_id, epoch, node)

    async def renew_batches(self, node: str, held: Sequence[tuple[int, int]],
                            lease_s: float) -> set[int]:
        """Renew each (batch id, epoch) of ``node`` in one statement (migrations/0009): each
        fenced as by ``renew_batch``. Returns the ids refused (stale, counted); the others are
        renewed. NotFound (nothing renewed) for a batch that does not exist."""
        for batch_id, epoch in held:
            _fenced_args(batch_id, epoch, node)
        check_name("node", node)
        lease = _lease(lease_s)
        if not held:
            return set()
        rows = await self._rows(
            "SELECT out_batch_id, out_lease_until"
            " FROM tenir_renew_batches(%s, %s::bigint[], %s::bigint[], %s)",
            (node, [b for b, _ in held], [e for _, e in held], lease))
        return {int(b) for b, until in rows if until is None}

    async def record_outcomes(
        self, batch_id: int, epoch: int, node: str, outcomes: Sequence[Outcome],
    ) -> None:
        """Write a flush of outcomes in one round trip (its rows as two JSON parameters,
        unpacked server-side: migration 0010). All or nothing: StaleEpoch if the database
        refused the claim (counted there), InvalidInput for a bad outcome or one for a
        recipient outside the batch."""
        _fenced_args(batch_id, epoch, node)
        status = await self._call(_RECORD, (batch_id, epoch, node,
                                            *pack_outcomes(outcomes).to_json()))
        if status == "stale":
            raise StaleEpoch(batch_id, epoch, node)

    async def finish_batch(self, batch_id: int, epoch: int, node: str) -> None:
        """Mark the batch done and complete its campaign when no batch of it is left open."""
        _fenced_args(batch_id, epoch, node)
        status = await self._call("SELECT tenir_finish_batch(%s, %s, %s)",
                                  (batch_id, epoch, node))
        if status == "stale":
            raise StaleEpoch(batch_id, epoch, node)
        if isinstance(status, str) and status.startswith("pending"):
            raise InvalidInput("batch_id", f"batch {batch_id} still has "
                               f"{status.split()[1]} pending recipients: record a final "
                               "outcome for each first")

    async def release_batch(self, batch_id: int, epoch: int, node: str) -> None:
        """Give the batch back (pending, no owner, same epoch). StaleEpoch if not the holder."""
        _fenced_args(batch_id, epoch, node)
        status = await self._call("SELECT tenir_release_batch(%s, %s, %s)",
                                  (batch_id, epoch, node))
        if status == "stale":
            raise StaleEpoch(batch_id, epoch, node)

    async def held_by(self, node: str) -> dict[int, int]:
        """The batches claimed by ``node`` now, each with its epoch."""
        node = check_name("node", node)
        async with self._statement() as conn:
            cur = await conn.execute("SELECT id, epoch FROM batches WHERE state = 'claimed'"
                                     " AND owner = %s", (node,))
            return {int(b): int(e) for b, e in await cur.fetchall()}

    async def reassign_batches(self, node: str, reserve_for: str | None = None,
                               hold_s: float = 0.0) -> int:
        """Put every batch claimed by ``node`` back to pending; returns how many. With
        ``reserve_for`` and ``hold_s > 0``, only claimers of that site may take them for
        ``hold_s`` seconds from now (database clock); otherwise anyone, at once."""
        node = check_name("node", node)
        hold = _hold(hold_s)
        if reserve_for is not None:
            reserve_for = check_name("reserve_for", reserve_for)
        if reserve_for is None or hold == 0:
            reserve_for, hold = None, 0.0
        async with self._statement() as conn:
            cur = await conn.execute(_REASSIGN, (reserve_for, reserve_for, hold, node, node,
                                                 reserve_for))
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def lift_reservations(self, site: str) -> int:
        """Open to every site the pending batches still held for ``site`` (its last live member
        died during the hold: nobody there will claim them); returns how many."""
        site = check_name("site", site)
        async with self._statement() as conn:
            cur = await conn.execute(
                "UPDATE batches SET reserved_site = NULL, reserved_until = NULL"
                " WHERE state = 'pending' AND reserved_site = %s AND reserved_until > now()",
                (site,))
            return cur.rowcount

    async def record_receipt(
        self, reference: str, state: AttemptState, carrier_message_id: str | None, *,
        in_flight: bool = False,
    ) -> ReceiptVerdict:
        """Update the attempt's state (upward only). A receipt for an attempt not recorded yet
        is kept and applied when it is, if ``in_flight``; otherwise nothing is stored."""
        check_name("reference", reference)
        if state not in RECEIPT_STATES:
            raise InvalidInput("state", "a receipt says sent, delivered or failed "
                               "(acknowledgements go to record_acknowledgement)")
        if carrier_message_id is not None:
            check_name("carrier_message_id", carrier_message_id)
        verdict = await self._call("SELECT tenir_record_receipt_checked(%s, %s, %s, %s)",
                                   (reference, state, carrier_message_id, in_flight))
        return cast(ReceiptVerdict, verdict)

    async def record_acknowledgement(
        self, reference: str, via: str, *, in_flight: bool = False,
    ) -> AckVerdict:
        """Mark the attempt and its recipient acknowledged, while the recipient is pending; see
        :data:`replication.store_api.AckVerdict` for what is refused."""
        check_name("reference", reference)
        check_name("via", via)
        verdict = await self._call("SELECT tenir_acknowledge(%s, %s, %s)",
                                   (reference, via, in_flight))
        return cast(AckVerdict, verdict)

    async def fencing_rejections(self) -> int:
        return int(await self._call("SELECT count(*) FROM fencing_rejections", ()))

    async def _rows(self, query: str, params: Sequence[Any]) -> list[Any]:
        """One statement in its own transaction, its rows; our functions' refusals become
        store_api errors."""
        try:
            async with self._statement() as conn:
                cur = await conn.execute(cast(Any, query), params)
                return await cur.fetchall()
        except psycopg.Error as e:
            mapped = db_error(e)
            if mapped is e:
                raise
            raise mapped from None

    async def _call(self, query: str, params: Sequence[Any]) -> Any:
        """One statement returning one value (see ``_rows``)."""
        rows = await self._rows(query, params)
        return rows[0][0] if rows else None
