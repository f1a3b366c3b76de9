"""An in-memory :class:`~replication.store_api.CampaignStore` for unit tests.

It follows ``replication/store_api.py`` and the conventions of the PostgreSQL store
(``replication/store_dispatch.py``, ``migrations/0002``) closely enough for the API and the
dispatcher to be tested against it:

* every method validates everything before changing anything (one "transaction");
  bad input raises :class:`InvalidInput` naming the field or ``line N`` (counted from 1);
* ``add_contacts`` creates the groups it names; an ``external_id`` may appear only once;
* launches (``memory_launch.py``): a ``group``'s contacts, or a ``population`` of N generated
  recipients, written in chunks of whole batches (``start_launch``, ``continue_launch``)
  ("Test 000001", +33639 followed by 7 digits, ``test-1@example.invalid``); an unknown scenario
  or group raises an error that is both :class:`InvalidInput` (naming the field) and
  :class:`NotFound`, as the PostgreSQL store's ``UnknownName`` does;
* batches carry fencing epochs: a write whose (batch, epoch, node) is not the current claim is
  refused with :class:`StaleEpoch` and counted; ``claim_batch`` takes pending batches, and
  claimed ones whose lease expired, of running campaigns by priority then age, skipping those
  that ``reassign_batches`` reserved for another site until the reservation expires (the
  store's ``clock``);
* ``Outcome.step``/``attempt`` are 0-based: recording attempt k of step s moves the recipient
  to (s, k + 1) unless it is already further; the first final outcome wins, only an
  acknowledgement upgrades it;
* receipts and acknowledgements for attempts not recorded yet are kept and applied when the
  attempt is recorded only when ``in_flight``; otherwise nothing is stored; the verdicts are
  those of ``store_api.ReceiptVerdict``/``AckVerdict`` (an acknowledgement of a recipient with
  a final outcome is ``final``; an identical receipt is not stored twice);
* ``erase_contact`` deletes the contact and blanks its campaign recipients;
* ``finish_batch`` refuses (``batch_id``) while the batch has pending recipients unless the
  campaign was cancelled; the campaign completes when its last batch is finished.

Test helpers: ``calls`` lists the methods called in order; ``unavailable = True`` makes every
method raise :class:`ConnectionError`, as an unreachable database would.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from replication.store_api import (
    CHANNELS,
    ERASED_NAME,
    CampaignState,
    CampaignStore,
    CampaignSummary,
    Contact,
    ContactIn,
    Event,
    InvalidInput,
    NotFound,
    RecipientOutcome,
    Scenario,
    ScenarioIn,
)
from replication.store_campaigns import check_states
from replication.store_events import check_event_kind
from tests.fakes.memory_base import CampaignRow, required_name
from tests.fakes.memory_dispatch import DispatchPart
from tests.fakes.memory_launch import LaunchPart

TRANSITIONS: frozenset[tuple[str, str]] = frozenset({
    ("running", "paused"), ("paused", "running"),
    ("running", "cancelled"), ("paused", "cancelled"),
})
_STATES = ("running", "paused", "completed", "cancelled", "failed")
_E164 = re.compile(r"\+[1-9]\d{6,14}\Z")
_LANGUAGE = re.compile(r"[a-z]{2,3}\Z")


def _page(limit: int, offset: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidInput("limit", "must be an integer from 1 to 10000")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput("offset", "must be an integer >= 0")


class MemoryStore(LaunchPart, DispatchPart):
    """The whole campaign store in dictionaries; see the module docstring. The dispatch side
    (claims, fenced writes, receipts, the ownership view) is in ``memory_dispatch.py``, the
    launches in ``memory_launch.py``."""

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
        for c in contacts:
            contact = Contact(**dataclasses.asdict(c), id=self._next_contact)
            self._next_contact += 1
            self._contacts.append(contact)
            for g in contact.groups:
                self._groups.setdefault(g.strip(), {})[contact.id] = None
        return len(contacts)

    async def list_contacts(self, limit: int = 100, offset: int = 0) -> list[Contact]:
        self._enter("list_contacts")
        _page(limit, offset)
        return self._contacts[offset:offset + limit]

    async def erase_contact(self, contact_id: int) -> int:
        self._enter("erase_contact")
        if isinstance(contact_id, bool) or not isinstance(contact_id, int) or contact_id < 1:
            raise InvalidInput("contact_id", "must be a positive integer")
        if not any(c.id == contact_id for c in self._contacts):
            raise NotFound(f"contact {contact_id}")
        self._contacts = [c for c in self._contacts if c.id != contact_id]
        for members in self._groups.values():
            members.pop(contact_id, None)
        blanked = 0
        for campaign in self._campaigns.values():
            for row in campaign.recipients.values():
                if row.contact_id == contact_id:
                    row.recipient = dataclasses.replace(row.recipient, name=ERASED_NAME,
                                                        phone=None, mobile=None, email=None)
                    row.contact_id = None
                    blanked += 1
        return blanked

    async def create_group(self, name: str) -> None:
        self._enter("create_group")
        name = required_name("name", name)
        if name in self._groups:
            raise InvalidInput("name", f"group {name!r} already exists")
        self._groups[name] = {}

    async def list_groups(self) -> dict[str, int]:
        self._enter("list_groups")
        return {name: len(members) for name, members in sorted(self._groups.items())}

    # -- scenarios -----------------------------------------------------------------------------

    async def create_scenario(self, scenario: ScenarioIn) -> Scenario:
        self._enter("create_scenario")
        name = required_name("name", scenario.name)
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

    def _campaign(self, campaign_id: int) -> CampaignRow:
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

    def _summary(self, campaign: CampaignRow) -> CampaignSummary:
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
            launch_state=campaign.launch_state,  # type: ignore[arg-type]
            requested=campaign.requested or len(campaign.recipients),
            launch_error=campaign.launch_error,
        )

    async def campaign_summary(self, campaign_id: int) -> CampaignSummary:
        self._enter("campaign_summary")
        return self._summary(self._campaign(campaign_id))

    async def list_campaigns(self, limit: int = 50,
                             states: Sequence[CampaignState] | None = None,
                             ) -> list[CampaignSummary]:
        self._enter("list_campaigns")
        _page(limit, 0)
        check_states(states)
        newest_first = sorted((c for c in self._campaigns.values()
                               if states is None or c.state in states), key=lambda c: -c.id)
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

    async def record_event(self, kind: str, sentence: str, node: str, site: str,
                           campaign_id: int | None = None,
                           details: Mapping[str, Any] | None = None,
                           actor: str | None = None) -> int:
        """Appended to ``self.ledger`` too (as the PostgreSQL store appends to its ledger)."""
        self._enter("record_event")
        check_event_kind(kind)
        node = required_name("node", node)
        site = required_name("site", site)
        who = actor or f"node:{node}"
        seq = await self.ledger.append(kind, sentence, actor=who, node=node, site=site,
                                       campaign_id=campaign_id, details=details)
        self.events.append(Event(id=seq, at=self.ledger.items[seq].at, kind=kind, node=node,
                                 site=site, campaign_id=campaign_id, sentence=sentence,
                                 details=dict(details or {}), actor=who))
        return seq

    async def list_events(self, limit: int = 100) -> list[Event]:
        self._enter("list_events")
        return list(reversed(self.events))[:limit]


_KIND = re.compile(r"[a-z][a-z0-9_.]*\Z")


def _conforms(store: MemoryStore) -> CampaignStore:
    """Makes mypy check that :class:`MemoryStore` implements the whole Protocol."""
    return store
