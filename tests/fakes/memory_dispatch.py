"""The in-memory store's dispatch part: claims, fenced writes, receipts and acknowledgements,
and the ownership view the watchdog reads. Conventions: see ``memory_store.py``.

Same-site takeover as in ``migrations/0004``: ``reassign_batches(node, reserve_for, hold_s)``
reserves the batches for ``reserve_for`` until ``clock() + hold_s``; ``claim_batch`` with another
site skips them until then, with ``site=None`` takes them; a claim clears the reservation and
records the claimer's site for ``owner_sites``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import timedelta

from replication.store_api import (
    CHANNELS,
    MAX_HOLD_S,
    AckVerdict,
    AttemptState,
    ClaimedBatch,
    InvalidInput,
    NotFound,
    Outcome,
    ReceiptVerdict,
    StaleEpoch,
)
from tests.fakes.memory_base import (
    AttemptRow,
    BatchRow,
    MemoryBase,
    RecipientRow,
    required_name,
)

MAX_LEASE_S = 3600.0
_RANK = {"sent": 0, "delivered": 1, "failed": 1, "acknowledged": 2}


def _up(old: AttemptState, new: AttemptState) -> AttemptState:
    return new if _RANK[new] > _RANK[old] else old


class DispatchPart(MemoryBase):
    @staticmethod
    def _lease(lease_s: float) -> timedelta:
        if isinstance(lease_s, bool) or not math.isfinite(lease_s) \
                or not 0 < lease_s <= MAX_LEASE_S:
            raise InvalidInput("lease_s", f"must be a number of seconds in (0, {MAX_LEASE_S:g}]")
        return timedelta(seconds=lease_s)

    async def claim_batch(self, node: str, lease_s: float,
                          site: str | None = None) -> ClaimedBatch | None:
        self._enter("claim_batch")
        node = required_name("node", node)
        lease = self._lease(lease_s)
        if site is not None:
            site = required_name("site", site)
        now = self.clock()
        running = sorted((c for c in self._campaigns.values() if c.state == "running"),
                         key=lambda c: (c.scenario.priority, c.id))
        for campaign in running:
            for batch in sorted(self._batches.values(), key=lambda b: b.id):
                if batch.campaign_id != campaign.id or batch.state == "done":
                    continue
                if batch.state == "claimed" and (batch.lease_until is None
                                                 or batch.lease_until >= now):
                    continue
                if (site is not None and batch.reserved_until is not None
                        and batch.reserved_until > now and batch.reserved_site != site):
                    continue  # held for the site whose carriers saw its references
                batch.state = "claimed"
                batch.epoch += 1
                batch.node = node
                batch.owner_site = site
                batch.lease_until = now + lease
                batch.reserved_site = batch.reserved_until = None
                recipients = tuple(
                    campaign.recipients[rid].recipient for rid in batch.recipient_ids
                    if campaign.recipients[rid].state == "pending"
                )
                return ClaimedBatch(
                    id=batch.id, campaign_id=campaign.id, epoch=batch.epoch, node=node,
                    lease_until=batch.lease_until, scenario=campaign.scenario,
                    recipients=recipients,
                )
        return None

    def _owned(self, batch_id: int, epoch: int, node: str) -> BatchRow:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise NotFound(f"batch {batch_id} not found")
        if batch.state != "claimed" or batch.epoch != epoch or batch.node != node:
            self._rejections += 1
            raise StaleEpoch(batch_id, epoch, node)
        return batch

    async def renew_batch(self, batch_id: int, epoch: int, node: str, lease_s: float) -> None:
        self._enter("renew_batch")
        lease = self._lease(lease_s)
        batch = self._owned(batch_id, epoch, node)
        batch.lease_until = self.clock() + lease

    async def renew_batches(self, node: str, held: Sequence[tuple[int, int]],
                            lease_s: float) -> set[int]:
        self._enter("renew_batches")
        lease = self._lease(lease_s)
        for batch_id, _ in held:
            if batch_id not in self._batches:
                raise NotFound(f"batch {batch_id} not found")
        refused: set[int] = set()
        for batch_id, epoch in held:
            try:
                self._owned(batch_id, epoch, node).lease_until = self.clock() + lease
            except StaleEpoch:
                refused.add(batch_id)
        return refused

    async def record_outcomes(
        self, batch_id: int, epoch: int, node: str, outcomes: Sequence[Outcome],
    ) -> None:
        self._enter("record_outcomes")
        batch = self._owned(batch_id, epoch, node)
        campaign = self._campaigns[batch.campaign_id]
        for i, o in enumerate(outcomes):
            where = f"outcomes[{i}]"
            if o.recipient_id not in batch.recipient_ids:
                raise InvalidInput(where, f"recipient {o.recipient_id} is not in batch "
                                   f"{batch_id}")
            known = self._attempts.get(o.reference)
            if known is not None and known.outcome.recipient_id != o.recipient_id:
                raise InvalidInput(where, f"reference {o.reference} belongs to another recipient")
            if o.channel not in CHANNELS:
                raise InvalidInput(where, "unknown channel")
            for name in ("reference", "carrier", "site"):  # as store_codec.pack_outcomes
                if not isinstance(getattr(o, name), str) or not getattr(o, name).strip():
                    raise InvalidInput(f"{where}.{name}", "must be a non-empty string")
            if o.state not in _RANK:
                raise InvalidInput(where, "unknown state")
            if o.final and o.state == "sent":
                raise InvalidInput(where, "a final outcome cannot be 'sent'")
        now = self.clock()
        for o in outcomes:
            outcome = o if o.at is not None else dataclasses.replace(o, at=now)
            known = self._attempts.get(o.reference)
            if known is None:
                self._attempts[o.reference] = AttemptRow(outcome, campaign.id)
            else:
                known.outcome = dataclasses.replace(
                    known.outcome, state=_up(known.outcome.state, outcome.state),
                    carrier_message_id=outcome.carrier_message_id
                    or known.outcome.carrier_message_id,
                    detail=outcome.detail or known.outcome.detail,
                )
            row = campaign.recipients[o.recipient_id]
            r = row.recipient
            if (o.step, o.attempt + 1) > (r.step, r.attempt):
                row.recipient = dataclasses.replace(r, step=o.step, attempt=o.attempt + 1)
            if row.state == "pending" and outcome.final:
                row.state = outcome.state  # type: ignore[assignment]  # never "sent" here
                row.final = outcome
        for o in outcomes:
            for state, cmid in self._unmatched_receipts.pop(o.reference, []):
                self._apply_receipt(o.reference, state, cmid)
            if o.reference in self._unmatched_acks:
                self._unmatched_acks.pop(o.reference)
                self._apply_ack(o.reference)

    async def finish_batch(self, batch_id: int, epoch: int, node: str) -> None:
        self._enter("finish_batch")
        done = self._batches.get(batch_id)
        if done is not None and done.state == "done" and done.node == node \
                and done.epoch == epoch:
            return  # finished again by the same claim: a retry after a lost reply, a no-op
        batch = self._owned(batch_id, epoch, node)
        campaign = self._campaigns[batch.campaign_id]
        if campaign.state != "cancelled":
            pending = sum(1 for rid in batch.recipient_ids
                          if campaign.recipients[rid].state == "pending")
            if pending:
                raise InvalidInput("batch_id", f"batch {batch_id} still has {pending} pending "
                                   "recipients: record a final outcome for each first")
        batch.state = "done"
        batch.lease_until = None
        campaign.end_if_done(self._batches.values(), self.clock())

    async def release_batch(self, batch_id: int, epoch: int, node: str) -> None:
        self._enter("release_batch")
        batch = self._owned(batch_id, epoch, node)
        batch.state = "pending"
        batch.node = batch.owner_site = None
        batch.lease_until = None

    async def held_by(self, node: str) -> dict[int, int]:
        self._enter("held_by")
        node = required_name("node", node)
        return {b.id: b.epoch for b in self._batches.values()
                if b.state == "claimed" and b.node == node}

    async def reassign_batches(self, node: str, reserve_for: str | None = None,
                               hold_s: float = 0.0) -> int:
        self._enter("reassign_batches")
        node = required_name("node", node)
        if isinstance(hold_s, bool) or not math.isfinite(hold_s) \
                or not 0 <= hold_s <= MAX_HOLD_S:
            raise InvalidInput("hold_s", f"must be a number of seconds in [0, {MAX_HOLD_S:g}]")
        if reserve_for is not None:
            reserve_for = required_name("reserve_for", reserve_for)
        until = self.clock() + timedelta(seconds=hold_s)
        held = reserve_for is not None and hold_s > 0
        moved = 0
        for batch in self._batches.values():
            if batch.state == "claimed" and batch.node == node:
                batch.state = "pending"
                batch.node = batch.owner_site = None
                batch.lease_until = None
                batch.reserved_site = reserve_for if held else None
                batch.reserved_until = until if held else None
                moved += 1
        return moved

    async def lift_reservations(self, site: str) -> int:
        self._enter("lift_reservations")
        site = required_name("site", site)
        lifted = 0
        for batch in self._batches.values():
            if (batch.state == "pending" and batch.reserved_site == site
                    and batch.reserved_until is not None and batch.reserved_until > self.clock()):
                batch.reserved_site = batch.reserved_until = None
                lifted += 1
        return lifted

    def _apply_receipt(self, reference: str, state: AttemptState, cmid: str | None) -> None:
        attempt = self._attempts[reference]
        attempt.outcome = dataclasses.replace(
            attempt.outcome, state=_up(attempt.outcome.state, state),
            carrier_message_id=attempt.outcome.carrier_message_id or cmid,
        )

    def _apply_ack(self, reference: str) -> None:
        attempt = self._attempts[reference]
        attempt.outcome = dataclasses.replace(attempt.outcome, state="acknowledged")
        row = self._campaigns[attempt.campaign_id].recipients[attempt.outcome.recipient_id]
        if row.state != "acknowledged":
            row.state = "acknowledged"
            row.final = dataclasses.replace(attempt.outcome, final=True, at=self.clock())

    async def record_receipt(
        self, reference: str, state: AttemptState, carrier_message_id: str | None, *,
        in_flight: bool = False,
    ) -> ReceiptVerdict:
        self._enter("record_receipt")
        reference = required_name("reference", reference)
        if state not in ("sent", "delivered", "failed"):
            raise InvalidInput("state", "a receipt says sent, delivered or failed")
        known = reference in self._attempts
        if not known and not in_flight:
            return "unknown"
        if (reference, state, carrier_message_id) not in self.receipts:
            self.receipts.append((reference, state, carrier_message_id))
            if not known:
                self._unmatched_receipts.setdefault(reference, []).append(
                    (state, carrier_message_id))
        if known:
            self._apply_receipt(reference, state, carrier_message_id)
        return "recorded" if known else "kept"

    def _recipient_of(self, reference: str) -> RecipientRow | None:
        parts = reference.split(":")
        if len(parts) < 3 or not all(p.isdigit() for p in parts[:2]):
            return None
        campaign = self._campaigns.get(int(parts[0]))
        return campaign.recipients.get(int(parts[1])) if campaign is not None else None

    async def record_acknowledgement(
        self, reference: str, via: str, *, in_flight: bool = False,
    ) -> AckVerdict:
        self._enter("record_acknowledgement")
        reference = required_name("reference", reference)
        via = required_name("via", via)
        row = self._recipient_of(reference)
        if row is None:
            return "unknown"
        if row.state != "pending":
            return "final"
        attempt = self._attempts.get(reference)
        if attempt is None:
            if not in_flight:
                return "early"
            self.acknowledgements.append((reference, via))
            self._unmatched_acks.setdefault(reference, via)
            return "kept"
        if attempt.outcome.recipient_id != row.recipient.id:
            return "unknown"
        self.acknowledgements.append((reference, via))
        self._apply_ack(reference)
        return "recorded"

    async def fencing_rejections(self) -> int:
        self._enter("fencing_rejections")
        return self._rejections

    async def batches_in_flight(self) -> dict[str, int]:
        self._enter("batches_in_flight")
        out: dict[str, int] = {}
        for b in self._batches.values():
            if b.state == "claimed" and b.node is not None:
                out[b.node] = out.get(b.node, 0) + 1
        return out

    async def owner_sites(self) -> dict[str, str]:
        self._enter("owner_sites")
        return {b.node: b.owner_site for b in self._batches.values()
                if b.state == "claimed" and b.node is not None and b.owner_site is not None}

    async def batches_in_flight_by_campaign(self) -> dict[int, dict[str, int]]:
        self._enter("batches_in_flight_by_campaign")
        out: dict[int, dict[str, int]] = {}
        for b in self._batches.values():
            if b.state == "claimed" and b.node is not None:
                per_node = out.setdefault(b.campaign_id, {})
                per_node[b.node] = per_node.get(b.node, 0) + 1
        return out

