"""A recipient's first attempt made by callbacks, without a task of its own.

Most recipients of a batch need one SMS and its delivery receipt. ``Delivery._deliver`` spends a
task, its wake-ups and two futures on that. Here the adapter's ``submit`` (``Submits``) calls
back with the carrier's answer, the dispatcher's receipt sink calls back with the receipt, and
the outcome goes to the batch's buffer from those callbacks: the same outcomes, in the same
order, with the same checks before the send.

Anything else is the coroutine's: a recipient whose first step waits for an acknowledgement, has
no such adapter or no address, or meets a closed gate (``_deliver`` then raises what stops the
batch); and, after an attempt made here failed, the retries and the next steps (``spawn`` starts
``_deliver`` for that recipient, told how the attempt ended: ``Ended``).

The batch task owns this object: ``close`` (the batch ends, however it ends) withdraws the sends
not written yet, drops the waits for receipts, cancels the timer, and every later callback does
nothing (as a cancelled ``_deliver`` records nothing for its attempt in flight).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from nodes.carriers.base import CarrierAdapter, Message, Receipt, SendResult, Submitted
from nodes.delivery import Delivery, Ended, address_for, reference_for, text_for
from nodes.lease import BatchLease
from nodes.outcomes import OutcomeBuffer
from replication.store_api import AttemptState, Channel, ClaimedBatch, Recipient


class CallbackAttempt:
    __slots__ = ("attempt", "carrier", "channel", "deadline", "finished", "owner", "r",
                 "receipt", "ref", "sent", "step_no", "submitted")

    def __init__(self, owner: CallbackAttempts, r: Recipient, channel: Channel,
                 carrier: CarrierAdapter, step_no: int, attempt: int, ref: str) -> None:
        self.owner = owner
        self.r = r
        self.channel = channel
        self.carrier = carrier
        self.step_no = step_no
        self.attempt = attempt
        self.ref = ref
        self.sent = False  # the carrier accepted it
        self.finished = False
        self.receipt: Receipt | None = None  # a receipt read before the carrier's answer
        self.submitted: Submitted | None = None
        self.deadline = 0.0


class CallbackAttempts:
    """The first attempts of one batch's recipients made by callbacks (see the module)."""

    def __init__(self, delivery: Delivery, batch: ClaimedBatch, buffer: OutcomeBuffer,
                 lost: asyncio.Event, lease: BatchLease,
                 spawn: Callable[[Recipient, Ended], None], done: Callable[[], None]) -> None:
        self.d = delivery
        self.batch = batch
        self.buffer = buffer
        self.lost = lost
        self.lease = lease
        self.spawn = spawn  # _deliver for this recipient, from where its attempt ended
        self.done = done  # one recipient is done (delivered, by callbacks)
        self.closed = False
        self._attempts: list[CallbackAttempt] = []
        self._receipts: deque[CallbackAttempt] = deque()  # waiting, deadline ascending
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def begin(self, r: Recipient) -> bool:
        """Send ``r``'s first attempt by callbacks; False: it is the coroutine's (nothing
        done)."""
        d = self.d
        steps = self.batch.scenario.steps
        step_no = r.step
        if step_no >= len(steps):
            return False
        step = steps[step_no]
        channel = step.channel
        submitter = d.submitters.get(channel)
        if submitter is None or step.ack != "none" or r.attempt > step.retries:
            return False
        to = address_for(channel, r)
        if to is None or self.lost.is_set() or not self.lease.usable() \
                or not d.gate.may_dispatch() or d._hand_off(channel):
            return False  # the coroutine says why (or raises what stops the batch)
        ref = reference_for(r, channel, step_no, r.attempt)
        a = CallbackAttempt(self, r, channel, d.carriers[channel], step_no, r.attempt, ref)
        self._attempts.append(a)
        d._receipt_calls[ref] = a
        submitted = submitter.submit(
            Message(ref, channel, to, text_for(step, r), step.ack, d.callback_url(step, ref)),
            lambda result: self._sent(a, result))
        if isinstance(submitted, SendResult):
            self._sent(a, submitted)
        else:
            a.submitted = submitted
        return True

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        receipts = self.d._receipt_calls
        for a in self._attempts:
            if not a.finished:
                a.finished = True
                receipts.pop(a.ref, None)
                if a.submitted is not None and not a.sent:
                    a.submitted.cancel()  # not written yet: never written
        self._attempts.clear()
        self._receipts.clear()

    # -- callbacks -------------------------------------------------------------------------

    def _sent(self, a: CallbackAttempt, result: SendResult) -> None:
        if self.closed or a.finished:
            return
        self.d._count_result(self.batch, a.channel, a.carrier.name, result)
        if not result.accepted:
            self._add(a, "failed", detail=result.error)
            self._end(a, "failed" if result.retryable else "fallback", result.error)
            return
        a.sent = True
        if a.receipt is not None:
            self.on_receipt(a, a.receipt)
            return
        a.deadline = self._loop.time() + self.d.receipt_timeout_s
        self._receipts.append(a)
        if self._timer is None:
            self._timer = self._loop.call_at(a.deadline, self._expire)

    def on_receipt(self, a: CallbackAttempt, receipt: Receipt) -> None:
        """The dispatcher's receipt sink, for an attempt made here."""
        if self.closed or a.finished:
            return
        if not a.sent:
            a.receipt = receipt  # read before the carrier's answer: taken up then
            return
        msg_id = receipt.carrier_message_id
        if receipt.state != "delivered":
            self._add(a, "failed", detail=receipt.detail, msg_id=msg_id)
            self._end(a, "failed", receipt.detail)
            return
        self._add(a, "delivered", final=True, msg_id=msg_id)
        self.d.ahead.note_done()
        a.finished = True
        self.d._receipt_calls.pop(a.ref, None)
        self.done()

    def _expire(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self._loop.time()
        waiting = self._receipts
        while waiting and (waiting[0].finished or waiting[0].deadline <= now):
            a = waiting.popleft()
            if not a.finished:
                self._add(a, "failed", detail="no delivery receipt")
                self._end(a, "failed", "no delivery receipt")
        if waiting:
            self._timer = self._loop.call_at(waiting[0].deadline, self._expire)

    def _add(self, a: CallbackAttempt, state: AttemptState, *, final: bool = False,
             detail: str | None = None, msg_id: str | None = None) -> None:
        self.buffer.add(self.d._outcome(a.r, a.channel, state, a.step_no, a.attempt,
                                        final=final, carrier=a.carrier.name, reference=a.ref,
                                        detail=detail, msg_id=msg_id))

    def _end(self, a: CallbackAttempt, state: str, detail: str | None) -> None:
        """The attempt failed: the coroutine goes on from it (a retry, or the next step)."""
        a.finished = True
        self.d._receipt_calls.pop(a.ref, None)
        self.spawn(a.r, Ended(a.step_no, a.attempt, state, detail))
