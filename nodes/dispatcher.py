"""The dispatcher: claims batches, sends each recipient's messages through the carriers following
the scenario (``nodes/delivery.py``: retries, then fallback to the next channel, waiting for
receipts and acknowledgements), and records outcomes in bulk under the batch's fencing epoch,
each flush journaled first (``nodes/outcomes.py``, ``nodes/journal.py``).

Held work: at most ``max_batches`` batches send at once; beyond them the node holds a reserve
claimed ahead (``nodes/reserve.py``: enough for ``claim_ahead_s`` seconds at its own rate, at
most ``claim_ahead_max`` batches), each under its renewed lease, started by campaign priority as
send slots free. When the queue runs dry (a claim finds nothing) a reserve is given back and
none is claimed for ``DRY_S``: a campaign's last batches go to the nodes with a free slot.
While PostgreSQL fails over no claim can be made: the node goes on sending what it holds, its
outcomes waiting in the journal, each batch only while its lease is usable (``nodes/lease.py``).
A batch whose delivery ended frees its slot at once; its outcomes are flushed and the batch
finished in the background, as soon as the store answers.

Ownership of tasks: the main loop owns one task per held batch (a tracked set, reaped when
done); each batch runs its lease renewal and its recipients in a TaskGroup; each batch's close
(flush, then finish or release) is a tracked future of its own, shielded from cancellation.
Shutdown has two modes: ``drain`` stops claiming, gives back the reserve at once and lets
running batches finish until a deadline, then cancels; ``now`` cancels at once. Either way
closes are awaited (bounded; what is not recorded stays in the journal for the next start).

A node that may not dispatch (its membership lease is in doubt, or it is cut from the store
while others reach it: see ``DispatchGate``), or may not claim (its site drained, a channel
handed to another site), sends nothing more from its reserve and gives it back.

Claims carry the node's site: a dead node's batches that the watchdog reserved for its site are
taken by a node of that site during the hold (its carriers deduplicate the references the dead
node had already submitted), by anyone after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from nodes.breaker import Breakers
from nodes.callback_attempts import CallbackAttempt, CallbackAttempts
from nodes.carriers.base import Ack, CarrierAdapter, Receipt, Submits
from nodes.delivery import (
    ChannelDown,
    Delivery,
    DispatchGate,
    Ended,
    FencedOff,
    address_for,
    reference_for,
    text_for,
)
from nodes.journal import OutcomeJournal
from nodes.lease import BatchLease, LeaseLost, Renewals, keep_lease
from nodes.metrics import Metrics
from nodes.outcomes import OutcomeBuffer
from nodes.reserve import ClaimAhead, SendSlots
from nodes.signing import CallbackUrls
from nodes.store_watch import StoreWatch
from replication.store_api import (
    CampaignStore,
    Channel,
    ClaimedBatch,
    InvalidInput,
    Recipient,
    StaleEpoch,
)

__all__ = ["AlwaysOpen", "ChannelDown", "ClaimGate", "DispatchGate", "Dispatcher",
           "DispatcherConfig", "FencedOff", "LeaseLost", "StopMode", "address_for",
           "reference_for", "text_for"]

log = logging.getLogger("tenir.dispatcher")
StopMode = Literal["drain", "now"]
CLOSE_DEADLINE_S = 25.0  # how long shutdown waits for outcome flushes (the journal keeps the rest)
CLOSE_RETRY_S = 0.5
# Once the queue has stayed dry (claims find nothing) for DRY_AFTER_S while a node holds a
# reserve, it gives the reserve back and claims only for free send slots for DRY_S: the last
# batches of a campaign go to whichever node has a slot free, as without a reserve, instead of
# waiting in one node's reserve while others idle. (A streaming launch leaves the queue dry for
# a moment between its first chunks: that is not the end.) A batch claimed again (epoch > 1:
# another node gave it back, or the watchdog moved it) also means the queue runs dry: without
# this, the nodes still busy took a reserve given back into their own reserve, and one site
# held a campaign's tail while the other idled (lab, link-cut: 14,600 of 20,000 at one site).
DRY_AFTER_S = 2.0
DRY_S = 5.0
# The store lags when this node's last write to it went unanswered, or one has waited longer
# than STORE_LAG_S (normally a few ms; ``nodes/store_watch.py``). Then a batch starts only on
# proof of membership fresher than FRESH_S, asked of the coordination service (retried every
# FRESH_RETRY_S until the membership gate closes): during a PostgreSQL failover the survivors
# reach a quorum and go on; a site cut from the others (store and coordination) stops starting
# batches it could not record within about STORE_LAG_S + FRESH_S, not when its membership
# lease runs out (docs/failover-timings.md).
STORE_LAG_S = 0.25
FRESH_S = 0.25
FRESH_RETRY_S = 0.2


class Freshness(Protocol):
    """Fresh proof of membership (``nodes.membership.FreshMembership``)."""

    async def fresh(self, within_s: float) -> bool: ...


class ClaimGate(Protocol):
    """Whether this node may take new work (False while its site is drained for maintenance);
    batches already claimed are finished."""

    def may_claim(self) -> bool: ...


class ChannelElsewhere(Protocol):
    """Whether a channel that fails at this site works at another site right now."""

    def available_elsewhere(self, channel: str) -> bool: ...


class Nowhere:
    def available_elsewhere(self, channel: str) -> bool:
        return False


class AlwaysOpen:
    def may_dispatch(self) -> bool:
        return True

    def may_claim(self) -> bool:
        return True


@dataclass(frozen=True)
class DispatcherConfig:
    node: str
    site: str
    lease_s: float = 15.0
    max_batches: int = 4
    idle_poll_s: float = 0.25
    receipt_timeout_s: float = 30.0
    drain_deadline_s: float = 10.0
    breaker_threshold: int = 20  # consecutive failed sends that mark a channel down here
    breaker_cooldown_s: float = 15.0
    claim_ahead_s: float = 0.0  # seconds of work held beyond what is being sent (0: none)
    claim_ahead_max: int = 0  # at most this many batches held so


@dataclass
class DispatchStats:
    batches_claimed: int = 0
    batches_finished: int = 0
    batches_released: int = 0
    fencing_rejections: int = 0
    sent: dict[tuple[str, str, str], int] = field(default_factory=dict)  # channel,carrier,result

    def count_send(self, channel: str, carrier: str, result: str) -> None:
        key = (channel, carrier, result)
        self.sent[key] = self.sent.get(key, 0) + 1


class Dispatcher(Delivery):
    def __init__(self, store: CampaignStore, carriers: Mapping[Channel, CarrierAdapter],
                 config: DispatcherConfig, gate: DispatchGate | None = None,
                 metrics: Metrics | None = None, claim_gate: ClaimGate | None = None,
                 elsewhere: ChannelElsewhere | None = None,
                 urls: CallbackUrls | None = None,
                 journal: OutcomeJournal | None = None,
                 freshness: Freshness | None = None) -> None:
        self.store = store
        self.urls = urls  # signed voice callback URLs and e-mail links to this node
        self.metrics = metrics
        self.carriers = dict(carriers)
        self.config = config
        self.site = config.site
        self.receipt_timeout_s = config.receipt_timeout_s
        self.breaker_threshold = config.breaker_threshold
        self.breaker_cooldown_s = config.breaker_cooldown_s
        self.gate = gate or AlwaysOpen()
        self.claim_gate = claim_gate or AlwaysOpen()
        self.breakers = Breakers(config.breaker_threshold, config.breaker_cooldown_s)
        self.elsewhere = elsewhere or Nowhere()
        self.journal = journal
        self.freshness = freshness
        self.ahead = ClaimAhead(config.claim_ahead_s, config.claim_ahead_max)
        self.renewals = Renewals(store, config.node, config.lease_s)  # one call per tick
        self.stats = DispatchStats()
        self._stopping = asyncio.Event()
        self._stop_mode: StopMode = "drain"
        self._batches: set[asyncio.Task[None]] = set()  # held: waiting or sending
        self._waiting: dict[asyncio.Task[None], ClaimedBatch] = {}  # waiting for a send slot
        # claimed, their task not yet run: a task cancelled before it ran releases nothing
        # itself (its coroutine never starts), so the reaper does; only a task that runs is
        # given back (cancelled), so that a batch just claimed is not given back before it ran
        self._unstarted: dict[asyncio.Task[None], tuple[ClaimedBatch, float]] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self.store_watch = StoreWatch()  # whether the store answers this node's writes
        self._slots = SendSlots(config.max_batches)
        self._changed = asyncio.Event()  # a batch ended or started sending
        self._claims = itertools.count()
        self._dry_until = 0.0  # loop time until which no reserve is claimed (DRY_S)
        self._dry_since: float | None = None  # the first of the claims finding nothing in a row
        self._held_ids: set[int] = set()  # batches this node knows it holds (until closed)
        self._sweep = False  # a claim failed: its answer may be lost, see _release_unknown
        self._receipts: dict[str, asyncio.Future[Receipt]] = {}
        self._receipt_calls: dict[str, CallbackAttempt] = {}  # attempts made by callbacks
        self._acks: dict[str, asyncio.Future[Ack]] = {}
        self.submitters = {channel: carrier for channel, carrier in self.carriers.items()
                           if isinstance(carrier, Submits)}

    # --- sinks handed to the carrier adapters and the API ----------------------------------
    async def on_receipt(self, receipt: Receipt) -> None:
        call = self._receipt_calls.get(receipt.reference)
        if call is not None:
            call.owner.on_receipt(call, receipt)
            return
        fut = self._receipts.get(receipt.reference)
        if fut is not None and not fut.done():
            fut.set_result(receipt)

    async def on_ack(self, ack: Ack) -> None:
        fut = self._acks.get(ack.reference)
        if fut is not None and not fut.done():
            fut.set_result(ack)

    def awaiting(self, reference: str) -> bool:
        """Whether an attempt of this dispatcher waits on ``reference``'s receipt or
        acknowledgement (the API keeps such a callback although the attempt is not recorded)."""
        return (reference in self._receipts or reference in self._acks
                or reference in self._receipt_calls)

    # --- lifecycle ---------------------------------------------------------------------------
    def request_stop(self, mode: StopMode = "drain") -> None:
        self._stop_mode = mode
        self._stopping.set()

    @property
    def running_batches(self) -> int:
        """Batches held (sending or waiting to)."""
        return len(self._batches)

    @property
    def reserve(self) -> int:
        """Batches held waiting for a send slot (or for their task to run)."""
        return len(self._waiting) + len(self._unstarted)

    async def run(self) -> None:
        """Claim and dispatch until ``request_stop``; then drain or cancel, and return."""
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping.is_set():
                self._gauges()
                if not self._may_claim():
                    self._give_back_reserve()
                    await self._idle()
                    continue
                if not self._room():
                    await self._wait_change()
                    continue
                sent = loop.time()
                write = self.store_watch.begin()
                try:
                    if self._sweep:
                        await self._release_unknown()
                    batch = await self.store.claim_batch(
                        self.config.node, self.config.lease_s, site=self.config.site)
                except Exception as exc:  # database away (failover): back off and retry
                    self.store_watch.failed(write)
                    log.warning("claim failed: %s", exc, extra=self._extra())
                    self._sweep = True
                    await self._idle(0.5)
                    continue
                self.store_watch.answered(write)
                if batch is None:
                    self._dry_since = self._dry_since or sent
                    if self._waiting and sent - self._dry_since >= DRY_AFTER_S:
                        self._dry_until = loop.time() + DRY_S  # the last batches: to whoever
                        self._give_back_reserve()  # has a free slot
                    await self._idle()
                    continue
                self._dry_since = None
                if batch.epoch > 1:  # given back (or moved from a node gone): the queue runs
                    self._dry_until = max(self._dry_until, loop.time() + DRY_S)  # dry: no
                self._held_ids.add(batch.id)  # reserve of it, to whoever has a free slot
                self.stats.batches_claimed += 1
                if self.metrics is not None:
                    self.metrics.batches_claimed.inc()
                task = asyncio.create_task(self._run_batch(batch, sent), name=f"batch-{batch.id}")
                self._batches.add(task)
                self._unstarted[task] = (batch, sent)
                task.add_done_callback(self._reap)
        finally:
            await self._shutdown()

    def _room(self) -> bool:
        """Whether to claim one more batch now: a send slot is free, or the reserve wants
        more. Bounded also by the closes under way (outcomes the store has not taken yet)."""
        if len(self._closing) >= 2 * self.config.max_batches + self.config.claim_ahead_max:
            return False
        if len(self._batches) < self.config.max_batches:
            return True
        if asyncio.get_running_loop().time() < self._dry_until:
            return False  # the queue ran dry: no reserve (see DRY_S)
        held = [*self._waiting.values(), *(b for b, _ in self._unstarted.values())]
        return self.ahead.wants_more(len(held), sum(len(b.recipients) for b in held))

    def _hand_off(self, channel: str) -> bool:
        """A channel failing here that works at another site: its work goes there."""
        return self.breakers.of(channel).is_open() and self.elsewhere.available_elsewhere(channel)

    def _may_claim(self) -> bool:
        return (self.gate.may_dispatch() and self.claim_gate.may_claim()
                and not any(self._hand_off(c) for c in self.breakers.open_channels()))

    def _give_back_reserve(self) -> None:
        """Cancel the batches waiting for a send slot: their close releases them."""
        for task in list(self._waiting):
            task.cancel()

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._waiting.pop(task, None)
        self._changed.set()
        never_ran = self._unstarted.pop(task, None)
        if never_ran is not None:  # cancelled before it ran: give its batch back here
            batch, sent = never_ran
            self._closing_of(batch, OutcomeBuffer(self.store, batch.id, batch.epoch, batch.node,
                                                  watch=self.store_watch),
                             False, BatchLease(self.config.lease_s, sent))
        if not task.cancelled() and task.exception() is not None:
            log.error("batch task failed: %r", task.exception(), extra=self._extra())

    async def _wait_change(self) -> None:
        """Until a batch ends or starts sending, a stop, or the idle poll (the reserve's target
        follows the rate)."""
        self._changed.clear()
        changed = asyncio.ensure_future(self._changed.wait())
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({changed, stop}, timeout=self.config.idle_poll_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (changed, stop):
                fut.cancel()
            await asyncio.gather(changed, stop, return_exceptions=True)

    async def _idle(self, delay: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay or self.config.idle_poll_s)

    async def _shutdown(self) -> None:
        self._give_back_reserve()
        if self._batches and self._stop_mode == "drain":
            log.info("draining %d batches", len(self._batches), extra=self._extra())
            await asyncio.wait(set(self._batches), timeout=self.config.drain_deadline_s)
        for task in list(self._batches):
            task.cancel()
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        if self._closing:  # outcome flushes and releases still under way
            _, late = await asyncio.wait(set(self._closing), timeout=CLOSE_DEADLINE_S)
            for pending in late:
                log.error("gave up flushing a batch's outcomes at shutdown%s", (
                    ": they stay in the journal, flushed at the next start"
                    if self.journal is not None else ""), extra=self._extra())
                pending.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.renewals.close()

    # --- one batch -----------------------------------------------------------------------------
    async def _run_batch(self, batch: ClaimedBatch, sent: float) -> None:
        extra = self._extra(batch.campaign_id)
        me = asyncio.current_task()
        assert me is not None
        self._unstarted.pop(me, None)
        self._waiting[me] = batch  # until it has a send slot
        lost = asyncio.Event()
        lease = BatchLease(self.config.lease_s, sent)

        def stale(exc: StaleEpoch) -> None:
            self._count_fencing()
            log.warning("outcome write refused: %s", exc, extra=extra)
            lost.set()

        buffer = OutcomeBuffer(self.store, batch.id, batch.epoch, batch.node, on_stale=stale,
                               journal=self.journal, watch=self.store_watch)
        finished = sending = False
        try:
            async with asyncio.TaskGroup() as tg:
                sent_all = asyncio.Event()
                renewer = tg.create_task(keep_lease(self.renewals, batch, lease, lost,
                                                    self._count_fencing, extra, sent_all))
                try:
                    await self._slots.acquire((batch.scenario.priority, next(self._claims)))
                    sending = True
                finally:
                    self._waiting.pop(me, None)
                    self._changed.set()
                await self._fresh_enough_to_start()
                # The TaskGroup owns the recipients' tasks (one failing cancels the others and
                # this body); a countdown says when they are all done, cheaper than a gather
                # (its future, dict entry and callbacks per task: 2 % of a node's CPU). Most
                # first attempts need no task: see nodes/callback_attempts.py.
                left = len(batch.recipients)
                every_one_done = asyncio.Event()

                def one_done(_: object = None) -> None:
                    nonlocal left
                    left -= 1
                    if left == 0:
                        every_one_done.set()

                def deliver(r: Recipient, after: Ended | None = None) -> None:
                    coro = self._deliver(batch, r, buffer, lost, lease, after)
                    try:
                        task = tg.create_task(coro)
                    except RuntimeError:  # the group is stopping: the batch is abandoned
                        coro.close()
                        return
                    task.add_done_callback(one_done)

                attempts = CallbackAttempts(self, batch, buffer, lost, lease, deliver, one_done)
                try:
                    for r in batch.recipients:
                        if not attempts.begin(r):
                            deliver(r)
                    if left:
                        await every_one_done.wait()
                finally:
                    attempts.close()
                sent_all.set()  # ends the renewer even if its cancellation is lost
                renewer.cancel()
            finished = True
        except* (LeaseLost, FencedOff, ChannelDown) as group:
            log.warning("batch %d abandoned: %s", batch.id, group.exceptions[0], extra=extra)
        finally:
            if sending:
                self._slots.release()
            # Its own future, shielded from this task's cancellation: the slot is free now,
            # the outcomes are flushed and the batch closed as soon as the store answers.
            self._closing_of(batch, buffer, finished, lease)

    async def _fresh_enough_to_start(self) -> None:
        """See STORE_LAG_S: while the store lags, start only on fresh proof of membership;
        FencedOff once the membership gate closes without it."""
        if self.freshness is None:
            return
        while self.store_watch.lagging(STORE_LAG_S):
            if await self.freshness.fresh(FRESH_S):
                return
            if not self.gate.may_dispatch():
                raise FencedOff("the store lags and the membership could not be confirmed")
            await asyncio.sleep(FRESH_RETRY_S)

    def _closing_of(self, batch: ClaimedBatch, buffer: OutcomeBuffer, finished: bool,
                    lease: BatchLease) -> None:
        closing = asyncio.ensure_future(self._close_batch(batch, buffer, finished, lease))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        closing.add_done_callback(lambda _: self._held_ids.discard(batch.id))

    async def _release_unknown(self) -> None:
        """After a failed claim: the store may have committed it and lost the answer (it
        failed as it replied). Release (fenced) what the store says this node holds and this
        node does not know of, rather than leave it until its lease runs out."""
        held = await self.store.held_by(self.config.node)
        self._sweep = False
        for batch_id, epoch in held.items():
            if batch_id in self._held_ids:
                continue
            try:
                await self.store.release_batch(batch_id, epoch, self.config.node)
                self.stats.batches_released += 1
                log.warning("released batch %d: claimed by this node as the store failed, its "
                            "answer lost", batch_id, extra=self._extra())
            except StaleEpoch:
                continue  # moved meanwhile: not ours any more

    async def _close_batch(self, batch: ClaimedBatch, buffer: OutcomeBuffer, finished: bool,
                           lease: BatchLease) -> None:
        """Flush (with a journal: until the store answers; its outcomes are safe meanwhile),
        then finish the batch, or release it when not finished; retried while the store is
        away and the lease lasts (past it the store refuses them: the batch moved on)."""
        complete = await buffer.close(  # without a journal: while the lease lasts
            None if self.journal is not None
            else max(CLOSE_RETRY_S, lease.valid_until - lease.clock() - CLOSE_RETRY_S))
        if buffer.stale is not None:
            return
        finish = finished and complete
        extra = self._extra(batch.campaign_id)
        while True:
            write = self.store_watch.begin()
            try:
                try:
                    if finish:
                        await self.store.finish_batch(batch.id, batch.epoch, batch.node)
                    else:
                        await self.store.release_batch(batch.id, batch.epoch, batch.node)
                except (StaleEpoch, InvalidInput):
                    self.store_watch.answered(write)
                    raise
                except BaseException:
                    self.store_watch.failed(write)
                    raise
                self.store_watch.answered(write)
                if finish:
                    self.stats.batches_finished += 1
                else:
                    self.stats.batches_released += 1
                return
            except StaleEpoch as exc:
                self._count_fencing()
                log.warning("closing batch refused: %s", exc, extra=extra)
                return
            except InvalidInput as exc:  # recipients left pending: release it instead
                log.warning("finishing batch %d refused: %s", batch.id, exc, extra=extra)
                if not finish:
                    return
                finish = False
            except Exception as exc:
                if lease.clock() + CLOSE_RETRY_S >= lease.valid_until:
                    log.warning("closing batch %d failed: %s", batch.id, exc, extra=extra)
                    return
                await asyncio.sleep(CLOSE_RETRY_S)

    def _gauges(self) -> None:
        if self.metrics is None:
            return
        self.metrics.batches_held.set(self.reserve, state="waiting")
        self.metrics.batches_held.set(len(self._batches) - self.reserve, state="sending")
        if self.journal is not None:
            self.metrics.journal_unsettled.set(self.journal.unsettled)

    # --- what the delivery mixin calls back --------------------------------------------------
    def _count_send(self, channel: str, carrier: str, result: str) -> None:
        self.stats.count_send(channel, carrier, result)
        if self.metrics is not None:
            self.metrics.messages_sent.inc(channel=channel, carrier=carrier, result=result)

    def _count_fencing(self) -> None:
        self.stats.fencing_rejections += 1
        if self.metrics is not None:
            self.metrics.fencing_rejections.inc()

    def _extra(self, campaign: int | None = None) -> dict[str, object]:
        return {"node": self.config.node, "site": self.config.site, "campaign": campaign}
