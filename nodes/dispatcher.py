"""The dispatcher: claims batches, sends each recipient's messages through the carriers following
the scenario (retries, then fallback to the next channel, waiting for receipts and
acknowledgements), and records outcomes in bulk under the batch's fencing epoch.

Ownership of tasks: the main loop owns one task per claimed batch (a tracked set, reaped when
done); each batch runs its recipients and its lease renewal in a TaskGroup. Shutdown has two
modes: ``drain`` stops claiming and lets running batches finish until a deadline, then cancels;
``now`` cancels at once. Either way buffered outcomes are flushed (shielded) and unfinished
batches are released so that another node takes them over.

A node that may not dispatch (its membership lease is in doubt, or it is cut from the store
while others reach it: see ``DispatchGate``) sends nothing more and stops claiming; the watchdog
will hand its batches to others.

Claims carry the node's site: a dead node's batches that the watchdog reserved for its site are
taken by a node of that site during the hold (its carriers deduplicate the references the dead
node had already submitted), by anyone after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from nodes.breaker import Breakers
from nodes.carriers.base import Ack, CarrierAdapter, Message, Receipt
from nodes.carriers.flow import within
from nodes.metrics import Metrics
from nodes.outcomes import OutcomeBuffer
from nodes.signing import CallbackUrls
from replication.store_api import (
    AttemptState,
    CampaignStore,
    Channel,
    ChannelStep,
    ClaimedBatch,
    InvalidInput,
    Outcome,
    Recipient,
    StaleEpoch,
)

log = logging.getLogger("tenir.dispatcher")
StopMode = Literal["drain", "now"]
CLOSE_DEADLINE_S = 25.0  # how long shutdown waits for outcome flushes (retried while leases last)
CLOSE_RETRY_S = 0.5  # between attempts to finish or release a batch while the store is away


class DispatchGate(Protocol):
    """Whether this node may send right now (False once its membership lease is in doubt, or
    while it is cut from the store: ``nodes/store_health.py``)."""

    def may_dispatch(self) -> bool: ...


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


class LeaseLost(Exception):
    pass


class FencedOff(Exception):
    pass


class ChannelDown(Exception):
    """A channel's carrier at this site is failing: the batch goes to a node that can send."""


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


def address_for(channel: Channel, r: Recipient) -> str | None:
    if channel == "sms":
        return r.mobile or r.phone
    if channel == "voice":
        return r.phone or r.mobile
    return r.email


def reference_for(r: Recipient, channel: Channel, step: int, attempt: int) -> str:
    """Idempotency reference: the same attempt always carries the same reference, whichever
    node makes it, so a carrier that deduplicates delivers it once."""
    return f"{r.campaign_id}:{r.id}:{channel}:{step}.{attempt}"


def text_for(step: ChannelStep, r: Recipient) -> str:
    template = step.templates.get(r.language) or step.templates.get("fr") or ""
    return template.replace("{name}", r.name)


class Dispatcher:
    def __init__(self, store: CampaignStore, carriers: Mapping[Channel, CarrierAdapter],
                 config: DispatcherConfig, gate: DispatchGate | None = None,
                 metrics: Metrics | None = None, claim_gate: ClaimGate | None = None,
                 elsewhere: ChannelElsewhere | None = None,
                 urls: CallbackUrls | None = None) -> None:
        self.store = store
        self.urls = urls  # signed voice callback URLs and e-mail links to this node
        self.metrics = metrics
        self.carriers = dict(carriers)
        self.config = config
        self.gate = gate or AlwaysOpen()
        self.claim_gate = claim_gate or AlwaysOpen()
        self.breakers = Breakers(config.breaker_threshold, config.breaker_cooldown_s)
        self.elsewhere = elsewhere or Nowhere()
        self.stats = DispatchStats()
        self._stopping = asyncio.Event()
        self._stop_mode: StopMode = "drain"
        self._batches: set[asyncio.Task[None]] = set()
        self._closing: set[asyncio.Future[None]] = set()
        self._receipts: dict[str, asyncio.Future[Receipt]] = {}
        self._acks: dict[str, asyncio.Future[Ack]] = {}

    # --- sinks handed to the carrier adapters and the API ----------------------------------
    async def on_receipt(self, receipt: Receipt) -> None:
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
        return reference in self._receipts or reference in self._acks

    # --- lifecycle ---------------------------------------------------------------------------
    def request_stop(self, mode: StopMode = "drain") -> None:
        self._stop_mode = mode
        self._stopping.set()

    @property
    def running_batches(self) -> int:
        return len(self._batches)

    async def run(self) -> None:
        """Claim and dispatch until ``request_stop``; then drain or cancel, and return."""
        slots = asyncio.Semaphore(self.config.max_batches)
        try:
            while not self._stopping.is_set():
                if not self._may_claim():
                    await self._idle()
                    continue
                await self._acquire(slots)
                if self._stopping.is_set():
                    slots.release()
                    break
                if not self._may_claim():
                    slots.release()  # the gates may have closed while we waited for a slot
                    continue
                try:
                    batch = await self.store.claim_batch(
                        self.config.node, self.config.lease_s, site=self.config.site)
                except Exception as exc:  # database away (failover): back off and retry
                    slots.release()
                    log.warning("claim failed: %s", exc, extra=self._extra())
                    await self._idle(0.5)
                    continue
                if batch is None:
                    slots.release()
                    await self._idle()
                    continue
                self.stats.batches_claimed += 1
                if self.metrics is not None:
                    self.metrics.batches_claimed.inc()
                task = asyncio.create_task(self._run_batch(batch), name=f"batch-{batch.id}")
                self._batches.add(task)
                task.add_done_callback(self._reaper(slots))
        finally:
            await self._shutdown()

    def _hand_off(self, channel: str) -> bool:
        """A channel failing here that works at another site: its work goes there."""
        return self.breakers.of(channel).is_open() and self.elsewhere.available_elsewhere(channel)

    def _may_claim(self) -> bool:
        return (self.gate.may_dispatch() and self.claim_gate.may_claim()
                and not any(self._hand_off(c) for c in self.breakers.open_channels()))

    def _reaper(self, slots: asyncio.Semaphore) -> Callable[[asyncio.Task[None]], None]:
        def reap(task: asyncio.Task[None]) -> None:
            self._batches.discard(task)
            slots.release()
            if not task.cancelled() and task.exception() is not None:
                log.error("batch task failed: %r", task.exception(), extra=self._extra())

        return reap

    async def _acquire(self, slots: asyncio.Semaphore) -> None:
        acquire = asyncio.ensure_future(slots.acquire())
        stop = asyncio.ensure_future(self._stopping.wait())
        done, _ = await asyncio.wait({acquire, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if acquire not in done:
            acquire.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acquire
            if acquire.done() and not acquire.cancelled():
                slots.release()
            await asyncio.sleep(0)

    async def _idle(self, delay: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay or self.config.idle_poll_s)

    async def _shutdown(self) -> None:
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
                log.error("gave up flushing a batch's outcomes at shutdown", extra=self._extra())
                pending.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # --- one batch -----------------------------------------------------------------------------
    async def _run_batch(self, batch: ClaimedBatch) -> None:
        extra = self._extra(batch.campaign_id)
        lost = asyncio.Event()

        def stale(exc: StaleEpoch) -> None:
            self._count_fencing()
            log.warning("outcome write refused: %s", exc, extra=extra)
            lost.set()

        buffer = OutcomeBuffer(self.store, batch.id, batch.epoch, batch.node, on_stale=stale)
        finished = False
        # Until when the lease is known to hold (claimed just now: a full lease from here).
        valid_until = [asyncio.get_running_loop().time() + self.config.lease_s]
        try:
            async with asyncio.TaskGroup() as tg:
                renewer = tg.create_task(self._renew(batch, lost, valid_until))
                workers = [tg.create_task(self._deliver(batch, r, buffer, lost))
                           for r in batch.recipients]
                if workers:
                    await asyncio.gather(*workers)
                renewer.cancel()
            finished = True
        except* (LeaseLost, FencedOff, ChannelDown) as group:
            log.warning("batch %d abandoned: %s", batch.id, group.exceptions[0], extra=extra)
        finally:
            # Shielded: cancelling the batch does not cancel the writes that record its outcomes;
            # shutdown waits for them (bounded) before returning.
            closing = asyncio.ensure_future(self._close_batch(batch, buffer, finished,
                                                              valid_until))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            await asyncio.shield(closing)

    async def _close_batch(self, batch: ClaimedBatch, buffer: OutcomeBuffer,
                           finished: bool, valid_until: list[float]) -> None:
        """Flush, then finish the batch (or release it when not finished), retried every
        CLOSE_RETRY_S while the store does not answer and the lease lasts: past it the store
        would refuse, and the batch is anyone's. Tried once only, a pooled connection broken
        by a restarted HAProxy left a finished batch claimed until its lease ran out (the
        soak of 2026-11-30: a campaign completed 24 s late). The outcomes are flushed while
        the lease lasts too, not for a fixed 20 s: a PostgreSQL failover of 21 s made a
        surviving node give up its batch's outcomes and release it, and another node of its
        site sent those 100 recipients again (the chaos matrix's site-power-cut, re-run)."""
        loop = asyncio.get_running_loop()
        complete = await buffer.close(
            max(CLOSE_RETRY_S, valid_until[0] - loop.time() - CLOSE_RETRY_S))
        if buffer.stale is not None:
            return
        finish = finished and complete
        extra = self._extra(batch.campaign_id)
        while True:
            try:
                if finish:
                    await self.store.finish_batch(batch.id, batch.epoch, batch.node)
                    self.stats.batches_finished += 1
                else:
                    await self.store.release_batch(batch.id, batch.epoch, batch.node)
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
                if loop.time() + CLOSE_RETRY_S >= valid_until[0]:
                    log.warning("closing batch %d failed, its lease runs out: %s", batch.id,
                                exc, extra=extra)
                    return
                log.info("closing batch %d failed, retrying: %s", batch.id, exc, extra=extra)
                await asyncio.sleep(CLOSE_RETRY_S)

    async def _renew(self, batch: ClaimedBatch, lost: asyncio.Event,
                     valid_until: list[float]) -> None:
        """Renew the batch lease every third of it (every second while failing). If it cannot
        be renewed, stop this batch once less than a third of the lease is left, before the
        lease can expire and another node take the batch over: one owner at a time."""
        loop = asyncio.get_running_loop()
        lease = self.config.lease_s
        safety = lease / 3
        wait = lease / 3
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), wait)
            if lost.is_set():
                raise LeaseLost(f"batch {batch.id} epoch {batch.epoch} is no longer ours")
            began = loop.time()
            try:
                await self.store.renew_batch(batch.id, batch.epoch, batch.node, lease)
                valid_until[0] = began + lease
                wait = lease / 3
            except StaleEpoch as exc:
                self._count_fencing()
                raise LeaseLost(str(exc)) from exc
            except Exception as exc:  # database away: retry soon, give up before expiry
                wait = min(1.0, lease / 3)
                left = valid_until[0] - loop.time()
                log.warning("lease renewal of batch %d failed (%.1f s left): %s", batch.id,
                            left, exc, extra=self._extra(batch.campaign_id))
                if left <= safety:
                    lost.set()
                    raise LeaseLost(f"batch {batch.id}: lease not renewed, {left:.1f} s left; "
                                    "stopping before it can expire") from exc

    # --- one recipient -------------------------------------------------------------------------
    async def _deliver(self, batch: ClaimedBatch, r: Recipient, buffer: OutcomeBuffer,
                       lost: asyncio.Event) -> None:
        steps = batch.scenario.steps
        last_detail = "no channel could reach the recipient"
        for step_no in range(r.step, len(steps)):
            step = steps[step_no]
            first_attempt = r.attempt if step_no == r.step else 0
            for attempt in range(first_attempt, step.retries + 1):
                if lost.is_set():
                    raise LeaseLost(f"batch {batch.id} lost")
                if not self.gate.may_dispatch():
                    raise FencedOff("may not send: membership in doubt or cut from the store")
                if self._hand_off(step.channel):
                    raise ChannelDown(f"{step.channel} carrier failing at {self.config.site}: "
                                      f"handing batch {batch.id} to a node that can send")
                state, detail = await self._attempt(batch, r, step, step_no, attempt, buffer)
                if state in ("delivered", "acknowledged"):
                    return
                last_detail = detail or last_detail
                if state == "fallback":
                    break
                if attempt < step.retries:
                    await asyncio.sleep(step.retry_interval_s)
        last = self.carriers.get(steps[-1].channel)
        # The store refuses an outcome without a carrier (a final failure was never written,
        # and its batch never finished): name the last step's, or say there was none.
        buffer.add(self._outcome(batch, r, steps[-1].channel, "failed", len(steps) - 1, 0,
                                 final=True, carrier=last.name if last is not None else "none",
                                 reference=f"{r.campaign_id}:{r.id}:final",
                                 detail=last_detail))

    async def _attempt(self, batch: ClaimedBatch, r: Recipient, step: ChannelStep, step_no: int,
                       attempt: int, buffer: OutcomeBuffer) -> tuple[str, str | None]:
        """One send and its wait. Returns (state, detail): delivered/acknowledged (final,
        recorded), failed (retry allowed) or fallback (go to the next step)."""
        channel = step.channel
        carrier = self.carriers.get(channel)
        to = address_for(channel, r)
        if carrier is None or to is None:
            return "fallback", f"no {channel} {'carrier' if carrier is None else 'address'}"
        ref = reference_for(r, channel, step_no, attempt)
        loop = asyncio.get_running_loop()
        receipt_fut: asyncio.Future[Receipt] = loop.create_future()
        ack_fut: asyncio.Future[Ack] = loop.create_future()
        self._receipts[ref] = receipt_fut
        if step.ack != "none":
            self._acks[ref] = ack_fut
        try:
            callback = None
            if self.urls is not None:  # the call's status callback; the e-mail's link
                callback = (self.urls.voice(ref) if channel == "voice"
                            else self.urls.link(ref) if channel == "email" and step.ack == "link"
                            else None)
            result = await carrier.send(Message(ref, channel, to, text_for(step, r), step.ack,
                                                callback))
            outcome_of_send = ("accepted" if result.accepted else
                               "throttled" if result.throttled else "refused")
            self.stats.count_send(channel, carrier.name, outcome_of_send)
            if self.breakers.of(channel).record(result.accepted):
                log.warning("%s carrier %s failed %d sends in a row: channel down at %s for "
                            "%.0f s, handing its work to the other site", channel, carrier.name,
                            self.config.breaker_threshold, self.config.site,
                            self.config.breaker_cooldown_s, extra=self._extra(batch.campaign_id))
            if self.metrics is not None:
                self.metrics.messages_sent.inc(channel=channel, carrier=carrier.name,
                                               result=outcome_of_send)
            if not result.accepted:
                buffer.add(self._outcome(batch, r, channel, "failed", step_no, attempt,
                                         carrier=carrier.name, reference=ref,
                                         detail=result.error))
                return ("failed" if result.retryable else "fallback"), result.error
            try:
                receipt = await within(receipt_fut, loop.time() + self.config.receipt_timeout_s)
            except TimeoutError:
                buffer.add(self._outcome(batch, r, channel, "failed", step_no, attempt,
                                         carrier=carrier.name, reference=ref,
                                         detail="no delivery receipt"))
                return "failed", "no delivery receipt"
            if receipt.state != "delivered":
                buffer.add(self._outcome(batch, r, channel, "failed", step_no, attempt,
                                         carrier=carrier.name, reference=ref,
                                         detail=receipt.detail, msg_id=receipt.carrier_message_id))
                return "failed", receipt.detail
            if step.ack == "none":
                buffer.add(self._outcome(batch, r, channel, "delivered", step_no, attempt,
                                         final=True, carrier=carrier.name, reference=ref,
                                         msg_id=receipt.carrier_message_id))
                return "delivered", None
            try:
                ack = await within(ack_fut, loop.time() + step.ack_timeout_s)
            except TimeoutError:
                buffer.add(self._outcome(batch, r, channel, "delivered", step_no, attempt,
                                         carrier=carrier.name, reference=ref,
                                         detail="delivered, not acknowledged",
                                         msg_id=receipt.carrier_message_id))
                return "fallback", "delivered but not acknowledged"
            buffer.add(self._outcome(batch, r, channel, "acknowledged", step_no, attempt,
                                     final=True, carrier=carrier.name, reference=ref,
                                     detail=f"acknowledged by {ack.via}",
                                     msg_id=receipt.carrier_message_id))
            return "acknowledged", None
        finally:
            self._receipts.pop(ref, None)
            self._acks.pop(ref, None)

    def _outcome(self, batch: ClaimedBatch, r: Recipient, channel: Channel, state: AttemptState,
                 step: int, attempt: int, *, final: bool = False, carrier: str = "",
                 reference: str, detail: str | None = None,
                 msg_id: str | None = None) -> Outcome:
        return Outcome(recipient_id=r.id, channel=channel, carrier=carrier, reference=reference,
                       state=state, step=step, attempt=attempt, final=final,
                       site=self.config.site, carrier_message_id=msg_id, detail=detail)

    def _count_fencing(self) -> None:
        self.stats.fencing_rejections += 1
        if self.metrics is not None:
            self.metrics.fencing_rejections.inc()

    def _extra(self, campaign: int | None = None) -> dict[str, object]:
        return {"node": self.config.node, "site": self.config.site, "campaign": campaign}
