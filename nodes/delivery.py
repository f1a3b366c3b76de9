"""One recipient's delivery: the scenario's steps in order, each channel's attempts and retries,
waiting for the delivery receipt and the acknowledgement, each attempt's outcome added to the
batch's outcome buffer (``nodes/outcomes.py``) with the time it happened.

Before each attempt it checks that the node may still send from the batch: the batch was not
lost (a refused write), its lease is still usable (``nodes/lease.py``: renewed, or enough of it
left through a store outage), the node's dispatch gate is open (membership, not cut from the
store) and the channel is not handed to another site. :class:`Delivery` is the dispatcher's
part that does it (a mixin: the dispatcher holds the carriers, breakers, gates and counters).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from nodes.breaker import Breakers
from nodes.carriers.base import Ack, CarrierAdapter, Message, Receipt, SendResult, Submits
from nodes.carriers.flow import within
from nodes.lease import BatchLease, LeaseLost
from nodes.metrics import Metrics
from nodes.outcomes import OutcomeBuffer
from nodes.reserve import ClaimAhead
from nodes.signing import CallbackUrls
from replication.store_api import (
    AttemptState,
    Channel,
    ChannelStep,
    ClaimedBatch,
    Outcome,
    Recipient,
)

if TYPE_CHECKING:
    from nodes.callback_attempts import CallbackAttempt

log = logging.getLogger("tenir.dispatcher")


class DispatchGate(Protocol):
    """Whether this node may send right now (False once its membership lease is in doubt, or
    while it is cut from the store: ``nodes/store_health.py``)."""

    def may_dispatch(self) -> bool: ...


class FencedOff(Exception):
    pass


class ChannelDown(Exception):
    """A channel's carrier at this site is failing: the batch goes to a node that can send."""


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


@dataclass(frozen=True)
class Ended:
    """How an attempt made by callbacks ended (``nodes/callback_attempts.py``), for
    ``_deliver`` to go on from."""

    step: int
    attempt: int
    state: str  # "failed": a retry is allowed; "fallback": the next step
    detail: str | None


class Delivery:
    """What the dispatcher provides to deliver (set by ``Dispatcher.__init__``)."""

    site: str
    carriers: dict[Channel, CarrierAdapter]
    breakers: Breakers
    gate: DispatchGate
    metrics: Metrics | None
    urls: CallbackUrls | None
    ahead: ClaimAhead
    receipt_timeout_s: float
    breaker_threshold: int
    breaker_cooldown_s: float
    submitters: dict[Channel, Submits]  # the carriers that can send by callbacks
    _receipts: dict[str, asyncio.Future[Receipt]]
    _receipt_calls: dict[str, CallbackAttempt]
    _acks: dict[str, asyncio.Future[Ack]]

    def _hand_off(self, channel: str) -> bool:
        raise NotImplementedError

    def _count_send(self, channel: str, carrier: str, result: str) -> None:
        raise NotImplementedError

    def _extra(self, campaign: int | None = None) -> dict[str, object]:
        raise NotImplementedError

    async def _deliver(self, batch: ClaimedBatch, r: Recipient, buffer: OutcomeBuffer,
                       lost: asyncio.Event, lease: BatchLease, after: Ended | None = None
                       ) -> None:
        """``r``'s scenario from where it stands; ``after``: from the end of an attempt made
        by callbacks (its outcome recorded already), as if this loop had made it."""
        steps = batch.scenario.steps
        last_detail = "no channel could reach the recipient"
        start_step, start_attempt = r.step, r.attempt
        if after is not None:
            last_detail = after.detail or last_detail
            start_step, start_attempt = after.step, after.attempt + 1
            if after.state == "fallback" or start_attempt > steps[start_step].retries:
                start_step, start_attempt = start_step + 1, 0
            else:
                await asyncio.sleep(steps[start_step].retry_interval_s)
        for step_no in range(start_step, len(steps)):
            step = steps[step_no]
            first_attempt = start_attempt if step_no == start_step else 0
            for attempt in range(first_attempt, step.retries + 1):
                if lost.is_set():
                    raise LeaseLost(f"batch {batch.id} lost")
                if not lease.usable():
                    lost.set()
                    raise LeaseLost(f"batch {batch.id}: lease not renewed in time; stopping "
                                    "before it can expire")
                if not self.gate.may_dispatch():
                    raise FencedOff("may not send: membership in doubt or cut from the store")
                if self._hand_off(step.channel):
                    raise ChannelDown(f"{step.channel} carrier failing at {self.site}: "
                                      f"handing batch {batch.id} to a node that can send")
                state, detail = await self._attempt(batch, r, step, step_no, attempt, buffer)
                if state in ("delivered", "acknowledged"):
                    self.ahead.note_done()
                    return
                last_detail = detail or last_detail
                if state == "fallback":
                    break
                if attempt < step.retries:
                    await asyncio.sleep(step.retry_interval_s)
        last = self.carriers.get(steps[-1].channel)
        # The store refuses an outcome without a carrier (a final failure was never written,
        # and its batch never finished): name the last step's, or say there was none.
        buffer.add(self._outcome(r, steps[-1].channel, "failed", len(steps) - 1, 0,
                                 final=True, carrier=last.name if last is not None else "none",
                                 reference=f"{r.campaign_id}:{r.id}:final",
                                 detail=last_detail))
        self.ahead.note_done()

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
        self._receipts[ref] = receipt_fut
        ack_fut: asyncio.Future[Ack] | None = None
        if step.ack != "none":
            self._acks[ref] = ack_fut = loop.create_future()

        def outcome(state: AttemptState, *, final: bool = False, detail: str | None = None,
                    msg_id: str | None = None) -> Outcome:
            assert carrier is not None
            return self._outcome(r, channel, state, step_no, attempt, final=final,
                                 carrier=carrier.name, reference=ref, detail=detail,
                                 msg_id=msg_id)

        try:
            result = await carrier.send(Message(ref, channel, to, text_for(step, r), step.ack,
                                                self.callback_url(step, ref)))
            self._count_result(batch, channel, carrier.name, result)
            if not result.accepted:
                buffer.add(outcome("failed", detail=result.error))
                return ("failed" if result.retryable else "fallback"), result.error
            try:
                receipt = await within(receipt_fut, loop.time() + self.receipt_timeout_s)
            except TimeoutError:
                buffer.add(outcome("failed", detail="no delivery receipt"))
                return "failed", "no delivery receipt"
            if receipt.state != "delivered":
                buffer.add(outcome("failed", detail=receipt.detail,
                                   msg_id=receipt.carrier_message_id))
                return "failed", receipt.detail
            if ack_fut is None:
                buffer.add(outcome("delivered", final=True, msg_id=receipt.carrier_message_id))
                return "delivered", None
            try:
                ack = await within(ack_fut, loop.time() + step.ack_timeout_s)
            except TimeoutError:
                buffer.add(outcome("delivered", detail="delivered, not acknowledged",
                                   msg_id=receipt.carrier_message_id))
                return "fallback", "delivered but not acknowledged"
            buffer.add(outcome("acknowledged", final=True, detail=f"acknowledged by {ack.via}",
                               msg_id=receipt.carrier_message_id))
            return "acknowledged", None
        finally:
            self._receipts.pop(ref, None)
            if ack_fut is not None:
                self._acks.pop(ref, None)

    def callback_url(self, step: ChannelStep, ref: str) -> str | None:
        """The call's status callback; the e-mail's acknowledgement link; None for an SMS."""
        if self.urls is None:
            return None
        channel = step.channel
        return (self.urls.voice(ref) if channel == "voice"
                else self.urls.link(ref) if channel == "email" and step.ack == "link" else None)

    def _count_result(self, batch: ClaimedBatch, channel: Channel, carrier: str,
                      result: SendResult) -> None:
        """A send's result in the counters and the channel's breaker."""
        self._count_send(channel, carrier, "accepted" if result.accepted else
                         "throttled" if result.throttled else "refused")
        if self.breakers.of(channel).record(result.accepted):
            log.warning("%s carrier %s failed %d sends in a row: channel down at %s for "
                        "%.0f s, handing its work to the other site", channel, carrier,
                        self.breaker_threshold, self.site, self.breaker_cooldown_s,
                        extra=self._extra(batch.campaign_id))

    def _outcome(self, r: Recipient, channel: Channel, state: AttemptState, step: int,
                 attempt: int, *, final: bool = False, carrier: str = "", reference: str,
                 detail: str | None = None, msg_id: str | None = None) -> Outcome:
        """The outcome as it happens, with its time (recorded as such, however late the store
        gets it: a survivor's outcomes wait in its journal through a PostgreSQL failover)."""
        return Outcome(recipient_id=r.id, channel=channel, carrier=carrier, reference=reference,
                       state=state, step=step, attempt=attempt, final=final,
                       site=self.site, carrier_message_id=msg_id, detail=detail,
                       at=datetime.now(UTC))
