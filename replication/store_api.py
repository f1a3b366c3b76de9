"""The campaign store's contract: the types and the abstract interface that the API, the dispatcher
and the watchdog use. ``replication/store.py`` implements it on PostgreSQL; unit tests use an
in-memory fake implementing the same Protocol.

Contract
--------
* Every method is a coroutine; each runs in one transaction: it either fully happens or not at all.
  Bad input raises :class:`InvalidInput` naming the field or line, and stores nothing.
* ``start_launch`` writes the campaign and the first chunk of its recipients (a snapshot of the
  contacts' addresses) and batches in one transaction: they are claimable as it returns.
  ``continue_launch`` writes the next chunk (one transaction each) until the cursor is
  ``done``; a chunk commits only while the launch is still the caller's (``LaunchStopped``
  once it was failed or the campaign cancelled). A launch that cannot finish is failed
  (``fail_launch`` by its writer, ``fail_stalled_launches`` by the watchdog when the writer
  died): what was written is still dispatched, and the campaign ends ``failed``, never
  ``completed``. ``launch_campaign`` does all of it before returning (tools, tests).
  Targets are either a ``group`` (its contacts) or a ``population`` of N *generated* test
  recipients (synthetic names, fictional numbers and ``example.invalid`` addresses, for drills
  and benchmarks; no contact is needed).
* ``claim_batch`` hands one pending batch of a running campaign to ``node`` (PostgreSQL
  ``FOR UPDATE SKIP LOCKED``: two nodes never get the same batch), increments its fencing
  ``epoch`` and sets a lease deadline. Only the holder of the current epoch may write outcomes.
  ``site`` is the claimer's site: a batch reserved for another site is skipped until its
  reservation expires; ``site=None`` states no site and takes reserved batches too (tools and
  tests; alert nodes always pass theirs). The claim clears the reservation and remembers
  ``site`` as the owner's site (``owner_sites``).
* ``record_outcomes`` writes many outcomes at once (one statement). The database itself
  refuses a write whose (batch, epoch, node) is no longer current: :class:`StaleEpoch` is raised,
  nothing of that call is stored, and the refusal is counted (``fencing_rejections``).
* ``reassign_batches`` (the watchdog) puts a dead node's batches back to pending; their epoch
  grows at the next claim, so the old holder's late writes are refused. With ``reserve_for`` a
  site and ``hold_s > 0`` (at most ``MAX_HOLD_S``; more is refused) they are reserved for that
  site for ``hold_s`` seconds (the store's clock): the references the dead node already
  submitted went to that site's carriers, which deduplicate them; a carrier of the other site
  would deliver them again. Without, anyone may claim them at once.
* ``owner_sites`` maps each node holding claimed batches to the site it claimed them for; a
  node that claimed without a site is left out.
* ``held_by(node)`` maps each batch claimed by ``node`` to its epoch: a node whose claim's
  answer was lost (the store failed while it came back) finds there what it holds unknowingly,
  and releases it (fenced) instead of leaving it until its lease runs out.
* A recipient has exactly one *final* outcome (delivered, acknowledged or failed); attempts
  before it are kept. ``recipient_outcomes`` returns the final one (or pending).
* ``record_receipt`` and ``record_acknowledgement`` store nothing for a reference whose attempt
  is not recorded unless ``in_flight`` (the caller's own dispatcher is waiting on it: the
  outcome that records the attempt comes later and applies what was kept). Their verdict says
  what happened: see :data:`ReceiptVerdict` and :data:`AckVerdict`. A receipt identical to one
  stored for its reference (same state and carrier id) is not stored twice.
* ``erase_contact`` deletes a contact and blanks the name and addresses of every campaign
  recipient copied from it (outcomes stay, as evidence); NotFound for an unknown contact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Channel = Literal["sms", "email", "voice"]
CHANNELS: tuple[Channel, ...] = ("sms", "email", "voice")
MAX_HOLD_S = 60.0  # longest reservation reassign_batches accepts: a hold delays work, keep it short
AckRule = Literal["none", "dtmf", "reply", "link"]
CampaignState = Literal["running", "paused", "completed", "cancelled", "failed"]
LaunchState = Literal["writing", "written", "failed"]
AttemptState = Literal["sent", "delivered", "acknowledged", "failed"]
RecipientState = Literal["pending", "delivered", "acknowledged", "failed"]
# recorded: its attempt exists and was updated; kept: not recorded yet but in flight, stored
# until its attempt is; unknown: nothing stored.
ReceiptVerdict = Literal["recorded", "kept", "unknown"]
# recorded and kept as for receipts; final: the recipient already has its final outcome (a
# replay, or too late); early: the recipient exists but this attempt was not made (nor is in
# flight); unknown: no such recipient in that campaign. Only recorded and kept store anything.
AckVerdict = Literal["recorded", "kept", "final", "early", "unknown"]
ERASED_NAME = "(erased)"


class StoreError(Exception):
    pass


class InvalidInput(StoreError):
    """Input refused; ``field`` names the field (or ``line N``) at fault."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class NotFound(StoreError):
    pass


class LaunchStopped(StoreError):
    """A launch chunk refused: the launch was failed (its writer was thought dead) or the
    campaign cancelled; the writer must stop."""

    def __init__(self, campaign_id: int, why: str) -> None:
        self.campaign_id = campaign_id
        self.why = why
        super().__init__(f"campaign {campaign_id}: launch stopped: {why}")


class StaleEpoch(StoreError):
    """A write carried a (batch, epoch, node) that is no longer the batch's current owner."""

    def __init__(self, batch_id: int, epoch: int, node: str) -> None:
        self.batch_id = batch_id
        self.epoch = epoch
        self.node = node
        super().__init__(f"batch {batch_id}: epoch {epoch} of node {node} is stale")


@dataclass(frozen=True)
class ContactIn:
    name: str
    phone: str | None = None  # E.164, validated
    mobile: str | None = None  # E.164, validated
    email: str | None = None
    language: str = "fr"
    groups: tuple[str, ...] = ()
    external_id: str | None = None


@dataclass(frozen=True)
class Contact(ContactIn):
    id: int = 0


@dataclass(frozen=True)
class ChannelStep:
    """One step of a scenario: a channel, its message per language, retries and acknowledgement."""

    channel: Channel
    templates: dict[str, str]  # language -> text; "fr" is the fallback language
    retries: int = 1  # further attempts on the same channel after a failure
    retry_interval_s: float = 2.0
    ack: AckRule = "none"  # "none": delivery is final; otherwise wait ack_timeout_s for an ack
    ack_timeout_s: float = 60.0


@dataclass(frozen=True)
class ScenarioIn:
    name: str
    steps: tuple[ChannelStep, ...]  # fallback order
    priority: int = 5  # 1 (highest) .. 9


@dataclass(frozen=True)
class Scenario(ScenarioIn):
    id: int = 0


@dataclass(frozen=True)
class Recipient:
    """A recipient as handed to a dispatcher, with where it stands in the scenario."""

    id: int
    campaign_id: int
    name: str
    phone: str | None
    mobile: str | None
    email: str | None
    language: str
    step: int = 0  # index into the scenario's steps
    attempt: int = 0  # attempts already made on that step


@dataclass(frozen=True)
class ClaimedBatch:
    id: int
    campaign_id: int
    epoch: int
    node: str
    lease_until: datetime
    scenario: Scenario
    recipients: tuple[Recipient, ...]


@dataclass(frozen=True)
class Outcome:
    """One attempt's result. ``final`` marks the recipient's final outcome."""

    recipient_id: int
    channel: Channel
    carrier: str
    reference: str  # idempotency reference: campaign:recipient:channel:attempt
    state: AttemptState
    step: int
    attempt: int
    final: bool
    site: str
    carrier_message_id: str | None = None
    detail: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class LaunchCursor:
    """Where a streaming launch stands: ``written`` of ``requested`` recipients so far."""

    campaign_id: int
    node: str  # the writer
    requested: int
    written: int
    batch_size: int
    group_id: int | None = None  # None: a generated population
    after_contact: int = 0  # a group's launch: the last contact id written
    done: bool = False


@dataclass(frozen=True)
class StalledLaunch:
    campaign_id: int
    node: str
    written: int
    requested: int


@dataclass(frozen=True)
class CampaignSummary:
    id: int
    scenario: str
    state: CampaignState
    launched_by: str
    recipients: int
    delivered: int
    acknowledged: int
    failed: int
    pending: int
    started_at: datetime
    completed_at: datetime | None
    by_site: dict[str, int] = field(default_factory=dict)  # final deliveries per site
    launch_state: LaunchState = "written"
    requested: int | None = None  # recipients asked for; ``recipients`` is what was written
    launch_error: str | None = None


@dataclass(frozen=True)
class RecipientOutcome:
    recipient_id: int
    name: str
    state: RecipientState
    channel: Channel | None
    site: str | None
    reference: str | None
    at: datetime | None


@dataclass(frozen=True)
class Event:
    """One decision of the watchdog (or an operator), as recorded: an entry of the continuity
    ledger (``id`` is its sequence number)."""

    id: int
    at: datetime
    kind: str  # "watchdog.move", "watchdog.cycle", ...
    node: str
    site: str
    campaign_id: int | None
    sentence: str
    details: dict[str, Any] = field(default_factory=dict)
    actor: str = ""  # who did it: node:<name>, or the caller's role:fingerprint


class CampaignStore(Protocol):
    # contacts and groups
    async def add_contacts(self, contacts: Sequence[ContactIn]) -> int: ...
    async def list_contacts(self, limit: int = 100, offset: int = 0) -> list[Contact]: ...
    async def erase_contact(self, contact_id: int) -> int: ...  # -> recipients blanked; NotFound
    async def create_group(self, name: str) -> None: ...
    async def list_groups(self) -> dict[str, int]: ...  # name -> member count

    # scenarios
    async def create_scenario(self, scenario: ScenarioIn) -> Scenario: ...
    async def get_scenario(self, name: str) -> Scenario: ...  # NotFound
    async def list_scenarios(self) -> list[Scenario]: ...

    # campaigns
    async def launch_campaign(
        self, scenario: str, launched_by: str, *, group: str | None = None,
        population: int | None = None, batch_size: int | None = None,
    ) -> int: ...
    async def start_launch(
        self, scenario: str, launched_by: str, *, node: str, group: str | None = None,
        population: int | None = None, batch_size: int | None = None, first: int = 1000,
    ) -> LaunchCursor: ...
    async def continue_launch(self, cursor: LaunchCursor, chunk: int) -> LaunchCursor: ...
    async def fail_launch(self, campaign_id: int, node: str, error: str) -> bool: ...
    async def fail_stalled_launches(
        self, live_nodes: Sequence[str], grace_s: float, stale_s: float,
    ) -> list[StalledLaunch]: ...
    async def set_campaign_state(self, campaign_id: int, state: CampaignState) -> None: ...
    async def campaign_summary(self, campaign_id: int) -> CampaignSummary: ...
    async def list_campaigns(self, limit: int = 50,
                             states: Sequence[CampaignState] | None = None,
                             ) -> list[CampaignSummary]: ...
    async def recipient_outcomes(
        self, campaign_id: int, limit: int = 100, offset: int = 0,
    ) -> list[RecipientOutcome]: ...

    # dispatch
    async def claim_batch(
        self, node: str, lease_s: float, site: str | None = None,
    ) -> ClaimedBatch | None: ...
    async def renew_batch(self, batch_id: int, epoch: int, node: str, lease_s: float) -> None: ...
    async def renew_batches(
        self, node: str, held: Sequence[tuple[int, int]], lease_s: float,
    ) -> set[int]: ...  # (batch id, epoch) each, in one transaction -> the ids refused (stale)
    async def record_outcomes(
        self, batch_id: int, epoch: int, node: str, outcomes: Sequence[Outcome],
    ) -> None: ...  # StaleEpoch
    async def finish_batch(self, batch_id: int, epoch: int, node: str) -> None: ...  # StaleEpoch
    async def release_batch(self, batch_id: int, epoch: int, node: str) -> None: ...
    async def held_by(self, node: str) -> dict[int, int]: ...  # claimed batch id -> epoch
    async def reassign_batches(
        self, node: str, reserve_for: str | None = None, hold_s: float = 0.0,
    ) -> int: ...  # -> batches put back to pending
    async def lift_reservations(self, site: str) -> int: ...  # -> pending batches opened to all
    async def record_receipt(
        self, reference: str, state: AttemptState, carrier_message_id: str | None, *,
        in_flight: bool = False,
    ) -> ReceiptVerdict: ...
    async def record_acknowledgement(
        self, reference: str, via: str, *, in_flight: bool = False,
    ) -> AckVerdict: ...
    async def fencing_rejections(self) -> int: ...

    # ownership view and events (the watchdog)
    async def batches_in_flight(self) -> dict[str, int]: ...  # owner node -> claimed batches
    async def owner_sites(self) -> dict[str, str]: ...  # owner node -> site it claimed for
    async def batches_in_flight_by_campaign(
        self,
    ) -> dict[int, dict[str, int]]: ...  # campaign id -> owner node -> claimed batches
    async def record_event(
        self, kind: str, sentence: str, node: str, site: str, campaign_id: int | None = None,
        details: Mapping[str, Any] | None = None, actor: str | None = None,
    ) -> int: ...  # appended to the continuity ledger; -> its sequence number
    async def list_events(self, limit: int = 100) -> list[Event]: ...
