"""An in-memory :class:`~replication.store_api.CampaignStore` for unit tests.

It follows ``replication/store_api.py`` and the conventions of the PostgreSQL store
(``replication/store_dispatch.py``, ``migrations/0002``) closely enough for the API and the
dispatcher to be tested against it:

* every method validates everything before changing anything (one "transaction");
  bad input raises :class:`InvalidInput` naming the field or ``line N`` (counted from 1);
* ``add_contacts`` creates the groups it names; an ``external_id`` may appear only once;
* ``launch_campaign``: a ``group``'s contacts, or a ``population`` of N generated recipients
  ("Test 000001", +33639 followed by 7 digits, ``test-1@example.invalid``); an unknown scenario
  or group raises an error that is both :class:`InvalidInput` (naming the field) and
  :class:`NotFound`, as the PostgreSQL store's ``UnknownName`` does;
* batches carry fencing epochs: a write whose (batch, epoch, node) is not the current claim is
  refused with :class:`StaleEpoch` and counted; ``claim_batch`` takes pending batches, and
  claimed ones whose lease expired, of running campaigns by priority then age;
* ``Outcome.step``/``attempt`` are 0-based: recording attempt k of step s moves the recipient
  to (s, k + 1) unless it is already further; the first final outcome wins, only an
  acknowledgement upgrades it;
* receipts and acknowledgements for attempts not recorded yet are kept and applied when the
  attempt is recorded; ``record_acknowledgement`` returns whether the attempt was known
  (idempotent: True again for an acknowledged attempt);
* ``finish_batch`` refuses (``batch_id``) while the batch has pending recipients unless the
  campaign was cancelled; the campaign completes when its last batch is finished.

Test helpers: ``calls`` lists the methods called in order; ``unavailable = True`` makes every
method raise :class:`ConnectionError`, as an unreachable database would.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from replication.store_api import (
    CHANNELS,
    AttemptState,
    CampaignState,
    CampaignStore,
    CampaignSummary,
    ClaimedBatch,
    Contact,
    ContactIn,
    Event,
    InvalidInput,
    NotFound,
    Outcome,
    Recipient,
    RecipientOutcome,
    RecipientState,
    Scenario,
    ScenarioIn,
    StaleEpoch,
)

MAX_POPULATION = 9_999_999
MAX_BATCH_SIZE = 10_000
MAX_LEASE_S = 3600.0
TRANSITIONS: frozenset[tuple[str, str]] = frozenset({
    ("running", "paused"), ("paused", "running"),
    ("running", "cancelled"), ("paused", "cancelled"),
})
_STATES = ("running", "paused", "completed", "cancelled")
_E164 = re.compile(r"\+[1-9]\d{6,14}\Z")
_LANGUAGE = re.compile(r"[a-z]{2,3}\Z")
_FINAL: frozenset[str] = frozenset({"delivered", "acknowledged", "failed"})
_RANK = {"sent": 0, "delivered": 1, "failed": 1, "acknowledged": 2}


class UnknownName(InvalidInput, NotFound):
    """An unknown scenario or group named in a launch: both kinds of refusal."""


def _now() -> datetime:
    return datetime.now(UTC)


def _up(old: AttemptState, new: AttemptState) -> AttemptState:
    return new if _RANK[new] > _RANK[old] else old


def _page(limit: int, offset: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidInput("limit", "must be an integer from 1 to 10000")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput("offset", "must be an integer >= 0")


def _name(field_name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field_name, "required, a non-empty string")
    return value.strip()


@dataclass
class _RecipientRow:
    recipient: Recipient
    batch_id: int = 0
    state: RecipientState = "pending"
    final: Outcome | None = None


@dataclass
class _CampaignRow:
    id: int
    scenario: Scenario
    state: CampaignState
    launched_by: str
    started_at: datetime
    recipients: dict[int, _RecipientRow]
    completed_at: datetime | None = None


@dataclass
class _BatchRow:
    id: int
    campaign_id: int
    recipient_ids: tuple[int, ...]
    state: str = "pending"  # pending | claimed | done
    epoch: int = 0
    node: str | None = None
    lease_until: datetime | None = None


@dataclass
class _Attempt:
    outcome: Outcome
    campaign_id: int


class MemoryStore:
    """The whole campaign store in dictionaries; see the module docstring."""

    def __init__(self, clock: Callable[[], datetime] = _now) -> None:
        self.clock = clock
        self.unavailable = False
        self.calls: list[str] = []
        self.receipts: list[tuple[str, AttemptState, str | None]] = []
        self.acknowledgements: list[tuple[str, str]] = []
        self._contacts: list[Contact] = []
        self._groups: dict[str, dict[int, None]] = {}  # name -> member ids, in order
        self._scenarios: dict[str, Scenario] = {}
        self._campaigns: dict[int, _CampaignRow] = {}
        self._batches: dict[int, _BatchRow] = {}
        self._attempts: dict[str, _Attempt] = {}
        self._unmatched_receipts: dict[str, list[tuple[AttemptState, str | None]]] = {}
        self._unmatched_acks: dict[str, str] = {}
        self._rejections = 0
        self._next_recipient = 1
        self.events: list[Event] = []

    def _enter(self, name: str) -> None:
        if self.unavailable:
            raise ConnectionError("campaign store unreachable")
        self.calls.append(name)

    # -- contacts and groups -------------------------------------------------------------------

    async def add_contacts(self, contacts: Sequence[ContactIn]) -> int:
        self._enter("add_contacts")
        known_ids = {c.external_id for c in self._contacts if c.external_id is not None}
        seen: dict[str, int] = {}
        for line, c in enumerate(contacts, start=1):
            where = f"line {line}"
            if not c.name.strip():
                raise InvalidInput(where, "name: required")
            for attr in ("phone", "mobile"):
                value = getattr(c, attr)
                if value is not None and not _E164.match(value):
                    raise InvalidInput(where, f"{attr}: not an E.164 number")
            if c.email is not None and "@" not in c.email:
                raise InvalidInput(where, "email: not an e-mail address")
            if not _LANGUAGE.match(c.language):
                raise InvalidInput(where, "language: not a language code")
            if any(not g.strip() for g in c.groups):
                raise InvalidInput(where, "groups: empty group name")
            if c.external_id is not None:
                if c.external_id in seen:
                    raise InvalidInput(where, f"external_id repeats line {seen[c.external_id]}")
                if c.external_id in known_ids:
                    raise InvalidInput(where, "external_id already exists")
                seen[c.external_id] = line
        first = len(self._contacts) + 1
        for i, c in enumerate(contacts):
            contact = Contact(**dataclasses.asdict(c), id=first + i)
            self._contacts.append(contact)
            for g in contact.groups:
                self._groups.setdefault(g.strip(), {})[contact.id] = None
        return len(contacts)

    async def list_contacts(self, limit: int = 100, offset: int = 0) -> list[Contact]:
        self._enter("list_contacts")
        _page(limit, offset)
        return self._contacts[offset:offset + limit]

    async def create_group(self, name: str) -> None:
        self._enter("create_group")
        name = _name("name", name)
        if name in self._groups:
            raise InvalidInput("name", f"group {name!r} already exists")
        self._groups[name] = {}

    async def list_groups(self) -> dict[str, int]:
        self._enter("list_groups")
        return {name: len(members) for name, members in sorted(self._groups.items())}

    # -- scenarios -----------------------------------------------------------------------------

    async def create_scenario(self, scenario: ScenarioIn) -> Scenario:
        self._enter("create_scenario")
        name = _name("name", scenario.name)
        if name in self._scenarios:
            raise InvalidInput("name", f"scenario {name!r} already exists")
        if not scenario.steps:
            raise InvalidInput("steps", "at least one step")
        if not 1 <= scenario.priority <= 9:
            raise InvalidInput("priority", "must be an integer from 1 to 9")
        for i, step in enumerate(scenario.steps):
            if step.channel not in CHANNELS:
                raise InvalidInput(f"steps[{i}].channel", "unknown channel")
            if "fr" not in step.templates:
                raise InvalidInput(f"steps[{i}].templates", "a 'fr' template is required")
        created = Scenario(name=name, steps=tuple(scenario.steps), priority=scenario.priority,
                           id=len(self._scenarios) + 1)
        self._scenarios[name] = created
        return created

    async def get_scenario(self, name: str) -> Scenario:
        self._enter("get_scenario")
        try:
            return self._scenarios[name]
        except KeyError:
            raise NotFound(f"scenario {name!r} not found") from None

    async def list_scenarios(self) -> list[Scenario]:
        self._enter("list_scenarios")
        return sorted(self._scenarios.values(), key=lambda s: s.id)

    # -- campaigns -----------------------------------------------------------------------------

    async def launch_campaign(
        self, scenario: str, launched_by: str, *, group: str | None = None,
        population: int | None = None, batch_size: int = 100,
    ) -> int:
        self._enter("launch_campaign")
        launched_by = _name("launched_by", launched_by)
        if (group is None) == (population is None):
            raise InvalidInput("group", "give either a group or a population, exactly one")
        if population is not None and (isinstance(population, bool)
                                       or not 1 <= population <= MAX_POPULATION):
            raise InvalidInput("population", f"must be an integer from 1 to {MAX_POPULATION}")
        if isinstance(batch_size, bool) or not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise InvalidInput("batch_size", f"must be an integer from 1 to {MAX_BATCH_SIZE}")
        if scenario not in self._scenarios:
            raise UnknownName("scenario", f"no scenario named {scenario!r}")
        campaign_id = len(self._campaigns) + 1
        people: list[tuple[str, str | None, str | None, str | None, str]] = []
        if group is not None:
            if group not in self._groups:
                raise UnknownName("group", f"no group named {group!r}")
            ids = set(self._groups[group])
            people = [(c.name, c.phone, c.mobile, c.email, c.language)
                      for c in self._contacts if c.id in ids]
            if not people:
                raise InvalidInput("group", f"group {group!r} has no contact")
        else:
            assert population is not None
            for n in range(1, population + 1):
                number = f"+33639{n:07d}"
                people.append((f"Test {n:06d}", number, number, f"test-{n}@example.invalid",
                               "fr"))
        rows: dict[int, _RecipientRow] = {}
        for name, phone, mobile, email, language in people:
            rid = self._next_recipient
            self._next_recipient += 1
            rows[rid] = _RecipientRow(Recipient(
                id=rid, campaign_id=campaign_id, name=name, phone=phone, mobile=mobile,
                email=email, language=language,
            ))
        self._campaigns[campaign_id] = _CampaignRow(
            id=campaign_id, scenario=self._scenarios[scenario], state="running",
            launched_by=launched_by, started_at=self.clock(), recipients=rows,
        )
        order = list(rows)
        for start in range(0, len(order), batch_size):
            batch_id = len(self._batches) + 1
            members = tuple(order[start:start + batch_size])
            self._batches[batch_id] = _BatchRow(batch_id, campaign_id, members)
            for rid in members:
                rows[rid].batch_id = batch_id
        return campaign_id

    def _campaign(self, campaign_id: int) -> _CampaignRow:
        try:
            return self._campaigns[campaign_id]
        except KeyError:
            raise NotFound(f"campaign {campaign_id} not found") from None

    async def set_campaign_state(self, campaign_id: int, state: CampaignState) -> None:
        self._enter("set_campaign_state")
        if state not in _STATES:
            raise InvalidInput("state", f"must be one of {', '.join(_STATES)}")
        campaign = self._campaign(campaign_id)
        if campaign.state == state:
            return
        if (campaign.state, state) not in TRANSITIONS:
            raise InvalidInput("state", f"a {campaign.state} campaign cannot become {state}")
        campaign.state = state
        if state == "cancelled":
            campaign.completed_at = self.clock()

    def _summary(self, campaign: _CampaignRow) -> CampaignSummary:
        counts = {"pending": 0, "delivered": 0, "acknowledged": 0, "failed": 0}
        by_site: dict[str, int] = {}
        for row in campaign.recipients.values():
            counts[row.state] += 1
            if row.state in ("delivered", "acknowledged") and row.final is not None:
                by_site[row.final.site] = by_site.get(row.final.site, 0) + 1
        return CampaignSummary(
            id=campaign.id, scenario=campaign.scenario.name, state=campaign.state,
            launched_by=campaign.launched_by, recipients=len(campaign.recipients),
            delivered=counts["delivered"], acknowledged=counts["acknowledged"],
            failed=counts["failed"], pending=counts["pending"],
            started_at=campaign.started_at, completed_at=campaign.completed_at,
            by_site=dict(sorted(by_site.items())),
        )

    async def campaign_summary(self, campaign_id: int) -> CampaignSummary:
        self._enter("campaign_summary")
        return self._summary(self._campaign(campaign_id))

    async def list_campaigns(self, limit: int = 50) -> list[CampaignSummary]:
        self._enter("list_campaigns")
        _page(limit, 0)
        newest_first = sorted(self._campaigns.values(), key=lambda c: -c.id)
        return [self._summary(c) for c in newest_first[:limit]]

    async def recipient_outcomes(
        self, campaign_id: int, limit: int = 100, offset: int = 0,
    ) -> list[RecipientOutcome]:
        self._enter("recipient_outcomes")
        _page(limit, offset)
        campaign = self._campaign(campaign_id)
        rows = sorted(campaign.recipients.values(), key=lambda r: r.recipient.id)
        out: list[RecipientOutcome] = []
        for row in rows[offset:offset + limit]:
            final = row.final
            out.append(RecipientOutcome(
                recipient_id=row.recipient.id, name=row.recipient.name, state=row.state,
                channel=final.channel if final else None, site=final.site if final else None,
                reference=final.reference if final else None, at=final.at if final else None,
            ))
        return out

    # -- dispatch ------------------------------------------------------------------------------

    @staticmethod
    def _lease(lease_s: float) -> timedelta:
        if isinstance(lease_s, bool) or not math.isfinite(lease_s) \
                or not 0 < lease_s <= MAX_LEASE_S:
            raise InvalidInput("lease_s", f"must be a number of seconds in (0, {MAX_LEASE_S:g}]")
        return timedelta(seconds=lease_s)

    async def claim_batch(self, node: str, lease_s: float) -> ClaimedBatch | None:
        self._enter("claim_batch")
        node = _name("node", node)
        lease = self._lease(lease_s)
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
                batch.state = "claimed"
                batch.epoch += 1
                batch.node = node
                batch.lease_until = now + lease
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

    def _owned(self, batch_id: int, epoch: int, node: str) -> _BatchRow:
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
            if o.state not in _RANK:
                raise InvalidInput(where, "unknown state")
            if o.final and o.state == "sent":
                raise InvalidInput(where, "a final outcome cannot be 'sent'")
        now = self.clock()
        for o in outcomes:
            outcome = o if o.at is not None else dataclasses.replace(o, at=now)
            known = self._attempts.get(o.reference)
            if known is None:
                self._attempts[o.reference] = _Attempt(outcome, campaign.id)
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
        if campaign.state in ("running", "paused") and all(
            b.state == "done" for b in self._batches.values() if b.campaign_id == campaign.id
        ):
            campaign.state = "completed"
            campaign.completed_at = self.clock()

    async def release_batch(self, batch_id: int, epoch: int, node: str) -> None:
        self._enter("release_batch")
        batch = self._owned(batch_id, epoch, node)
        batch.state = "pending"
        batch.node = None
        batch.lease_until = None

    async def reassign_batches(self, node: str) -> int:
        self._enter("reassign_batches")
        moved = 0
        for batch in self._batches.values():
            if batch.state == "claimed" and batch.node == node:
                batch.state = "pending"
                batch.node = None
                batch.lease_until = None
                moved += 1
        return moved

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
        self, reference: str, state: AttemptState, carrier_message_id: str | None,
    ) -> None:
        self._enter("record_receipt")
        reference = _name("reference", reference)
        if state not in ("sent", "delivered", "failed"):
            raise InvalidInput("state", "a receipt says sent, delivered or failed")
        self.receipts.append((reference, state, carrier_message_id))
        if reference in self._attempts:
            self._apply_receipt(reference, state, carrier_message_id)
        else:
            self._unmatched_receipts.setdefault(reference, []).append(
                (state, carrier_message_id))

    async def record_acknowledgement(self, reference: str, via: str) -> bool:
        self._enter("record_acknowledgement")
        reference = _name("reference", reference)
        via = _name("via", via)
        self.acknowledgements.append((reference, via))
        if reference not in self._attempts:
            self._unmatched_acks.setdefault(reference, via)
            return False
        self._apply_ack(reference)
        return True

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

    async def batches_in_flight_by_campaign(self) -> dict[int, dict[str, int]]:
        self._enter("batches_in_flight_by_campaign")
        out: dict[int, dict[str, int]] = {}
        for b in self._batches.values():
            if b.state == "claimed" and b.node is not None:
                per_node = out.setdefault(b.campaign_id, {})
                per_node[b.node] = per_node.get(b.node, 0) + 1
        return out

    async def record_event(self, kind: str, sentence: str, node: str, site: str,
                           campaign_id: int | None = None,
                           details: Mapping[str, Any] | None = None) -> int:
        self._enter("record_event")
        event = Event(id=len(self.events) + 1, at=self.clock(), kind=kind, node=node, site=site,
                      campaign_id=campaign_id, sentence=sentence, details=dict(details or {}))
        self.events.append(event)
        return event.id

    async def list_events(self, limit: int = 100) -> list[Event]:
        self._enter("list_events")
        return list(reversed(self.events))[:limit]


def _conforms(store: MemoryStore) -> CampaignStore:
    """Makes mypy check that :class:`MemoryStore` implements the whole Protocol."""
    return store
