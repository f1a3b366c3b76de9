"""The in-memory store's state, shared by its parts (``memory_store.py`` for contacts, scenarios,
campaigns and events; ``memory_dispatch.py`` for claims, fenced writes, receipts and the
ownership view): the rows, the clock, the call log and the ``unavailable`` switch."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from replication.store_api import (
    AttemptState,
    CampaignState,
    Contact,
    Event,
    InvalidInput,
    Outcome,
    Recipient,
    RecipientState,
    Scenario,
)
from tests.fakes.memory_ledger import MemoryLedger


def utc_now() -> datetime:
    return datetime.now(UTC)


def required_name(field_name: str, value: str) -> str:
    """``value`` stripped; InvalidInput naming ``field_name`` when it is not a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field_name, "required, a non-empty string")
    return value.strip()


@dataclass
class RecipientRow:
    recipient: Recipient
    batch_id: int = 0
    state: RecipientState = "pending"
    final: Outcome | None = None
    contact_id: int | None = None  # the contact it was copied from (None: generated)


@dataclass
class CampaignRow:
    id: int
    scenario: Scenario
    state: CampaignState
    launched_by: str
    started_at: datetime
    recipients: dict[int, RecipientRow]
    completed_at: datetime | None = None
    launch_state: str = "written"  # writing | written | failed (migrations/0008)
    requested: int = 0
    launch_node: str | None = None
    launch_error: str | None = None
    launch_heartbeat: datetime | None = None

    def end_if_done(self, batches: Iterable[BatchRow], now: datetime) -> None:
        """Completed when written and no batch is open; failed when its launch failed."""
        if self.state in ("running", "paused") and self.launch_state != "writing" and all(
                b.state == "done" for b in batches if b.campaign_id == self.id):
            self.state = "failed" if self.launch_state == "failed" else "completed"
            self.completed_at = now


@dataclass
class BatchRow:
    id: int
    campaign_id: int
    recipient_ids: tuple[int, ...]
    state: str = "pending"  # pending | claimed | done
    epoch: int = 0
    node: str | None = None
    lease_until: datetime | None = None
    owner_site: str | None = None  # the site the owner claimed for
    reserved_site: str | None = None  # while pending: only claimers of this site may take it...
    reserved_until: datetime | None = None  # ...until then


@dataclass
class AttemptRow:
    outcome: Outcome
    campaign_id: int


class MemoryBase:
    """The state every part of the in-memory store reads and writes."""

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self.clock = clock
        self.unavailable = False
        self.calls: list[str] = []
        self.receipts: list[tuple[str, AttemptState, str | None]] = []
        self.acknowledgements: list[tuple[str, str]] = []
        self._contacts: list[Contact] = []
        self._groups: dict[str, dict[int, None]] = {}  # name -> member ids, in order
        self._scenarios: dict[str, Scenario] = {}
        self._campaigns: dict[int, CampaignRow] = {}
        self._batches: dict[int, BatchRow] = {}
        self._attempts: dict[str, AttemptRow] = {}
        self._unmatched_receipts: dict[str, list[tuple[AttemptState, str | None]]] = {}
        self._unmatched_acks: dict[str, str] = {}
        self._rejections = 0
        self._next_recipient = 1
        self._next_contact = 1
        self.events: list[Event] = []
        self.ledger = MemoryLedger(clock)

    def _enter(self, name: str) -> None:
        if self.unavailable:
            raise ConnectionError("campaign store unreachable")
        self.calls.append(name)
