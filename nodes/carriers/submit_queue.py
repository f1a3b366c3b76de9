"""Submissions completed by callback: an adapter's window, rate limit and timeouts without a
task, a semaphore waiter or a timer per message (the SMPP adapter's ``submit``; ``send`` awaits
one).

* A submission waits in a FIFO until a window slot and a rate token are both free. It is then
  written (the adapter's ``write`` returns its sequence number), or held, keeping its slot, while
  the adapter is not bound, and written at the next bind (``bound``).
* It is finished exactly once, and ``done`` called then (never from within ``put``):
  - by the carrier's answer (``finish``, from the adapter's read loop);
  - by its timeout, ``timeout_s`` after it took its slot: no bind, or no answer;
  - by its local wait, ``max_wait_s`` in the FIFO (``None``: as long as it takes);
  - by a lost connection (``lost``: the written ones), or by ``close`` (all).
* ``Submission.cancel`` before it is written withdraws it: it is never written and ``done`` is
  never called. After, the message is out: only its callback is dropped, and its slot is freed
  when the answer or the timeout comes.
* The deadlines follow the order of the FIFO and of the slots (one ``timeout_s``, one
  ``max_wait_s``), so one timer, armed for the oldest, serves them all; most submissions are
  answered before it fires and are dropped from the front then.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Final

from nodes.carriers.base import SendResult
from nodes.carriers.flow import TokenBucket, check_flow

log = logging.getLogger("tenir.carriers")

Done = Callable[[SendResult], None]

WAITING: Final = 0  # in the FIFO, holding nothing
HELD: Final = 1  # holding a window slot, waiting for the bind
WRITTEN: Final = 2  # holding a window slot, waiting for the carrier's answer
FINISHED: Final = 3  # done called (or withdrawn)


class Submission:
    """One message handed to :class:`SubmitQueue`; ``cancel`` withdraws it (see the module)."""

    __slots__ = ("_queue", "deadline", "done", "payload", "reference", "reply", "seq", "state",
                 "to", "wait_until")

    def __init__(self, queue: SubmitQueue, payload: bytes, reference: str, to: str,
                 reply: bool, done: Done, wait_until: float) -> None:
        self._queue = queue
        self.payload = payload
        self.reference = reference
        self.to = to
        self.reply = reply  # the recipient's answer acknowledges it (SMPP: an SMS reply)
        self.done: Done | None = done
        self.wait_until = wait_until
        self.deadline = math.inf
        self.seq = 0
        self.state = WAITING

    def cancel(self) -> None:
        self._queue.cancel(self)


class SubmitQueue:
    def __init__(self, *, window: int, rate_per_s: float | None, max_wait_s: float | None,
                 timeout_s: float, write: Callable[[Submission], int],
                 on_finish: Callable[[Submission, SendResult], None] | None = None) -> None:
        """``write`` writes a submission to the carrier and returns its sequence number, or 0
        when it cannot (not bound: held until ``bound``). ``on_finish`` sees every result
        before ``done`` does (the adapter's bookkeeping and logs)."""
        check_flow(window, rate_per_s, max_wait_s)
        self.window = window
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self._bucket = TokenBucket(rate_per_s) if rate_per_s is not None else None
        self._write = write
        self._on_finish = on_finish
        self._waiting: deque[Submission] = deque()  # FIFO, wait_until ascending
        self._slots: deque[Submission] = deque()  # took a slot, deadline ascending
        self._held: list[Submission] = []
        self._written: dict[int, Submission] = {}
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._token_timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Submissions holding a window slot (written, or held until the bind)."""
        return self._in_flight

    def put(self, payload: bytes, reference: str, to: str, reply: bool,
            done: Done) -> Submission:
        loop = asyncio.get_running_loop()
        wait_until = math.inf if self.max_wait_s is None else loop.time() + self.max_wait_s
        sub = Submission(self, payload, reference, to, reply, done, wait_until)
        if self._closed:
            raise RuntimeError("submit queue closed")
        self._waiting.append(sub)
        self._pump()
        return sub

    def answered(self, seq: int) -> Submission | None:
        """The written submission of sequence ``seq`` (None: unknown, or already timed out)."""
        return self._written.pop(seq, None)

    def finish(self, sub: Submission, result: SendResult) -> None:
        if sub.state == FINISHED:
            return
        if sub.state != WAITING:
            self._in_flight -= 1
            if sub.state == WRITTEN:
                self._written.pop(sub.seq, None)
        sub.state = FINISHED
        if self._on_finish is not None:
            self._on_finish(sub, result)
        done, sub.done = sub.done, None
        if done is not None:
            try:
                done(result)
            except Exception:  # a caller's bug must not stop the adapter's read loop
                log.exception("submission callback failed", extra={"event": "submit_done_failed",
                                                                   "reference": sub.reference})
        if self._waiting and not self._closed:
            self._pump()

    def cancel(self, sub: Submission) -> None:
        if sub.state == WAITING:
            sub.state = FINISHED  # dropped from the FIFO when it reaches the front
        elif sub.state == HELD:
            sub.state = FINISHED
            self._in_flight -= 1
            self._pump()
        sub.done = None

    def bound(self) -> None:
        """The adapter is bound again: write what held a slot meanwhile, then what waits."""
        held, self._held = self._held, []
        for sub in held:
            if sub.state == HELD:
                self._write_one(sub)
        self._pump()

    def lost(self, why: str) -> None:
        """The connection is lost: every written submission fails (retryable)."""
        written, self._written = self._written, {}
        for sub in written.values():
            self.finish(sub, SendResult(False, error=f"connection lost: {why}", retryable=True))

    def close(self) -> None:
        self._closed = True
        for handle in (self._timer, self._token_timer):
            if handle is not None:
                handle.cancel()
        self._timer = self._token_timer = None
        self.lost("adapter closed")
        closed = SendResult(False, error="adapter closed", retryable=True)
        for sub in [*self._held, *self._waiting]:
            self.finish(sub, closed)
        self._held.clear()
        self._waiting.clear()
        self._slots.clear()

    # -- inside ----------------------------------------------------------------------------

    def _write_one(self, sub: Submission) -> None:
        seq = self._write(sub)
        if seq:
            sub.seq = seq
            sub.state = WRITTEN
            self._written[seq] = sub
        else:
            sub.state = HELD
            self._held.append(sub)

    def _pump(self) -> None:
        waiting = self._waiting
        bucket = self._bucket
        now = asyncio.get_running_loop().time()
        while waiting and self._in_flight < self.window:
            sub = waiting[0]
            if sub.state != WAITING:
                waiting.popleft()
                continue
            if bucket is not None and not bucket.try_acquire():
                self._await_token(bucket)
                break
            waiting.popleft()
            self._in_flight += 1
            sub.deadline = now + self.timeout_s
            self._slots.append(sub)
            self._write_one(sub)
        self._arm()

    def _await_token(self, bucket: TokenBucket) -> None:
        if self._token_timer is None:
            delay = max(0.001, (1.0 - bucket.tokens) / bucket.rate_per_s)
            self._token_timer = asyncio.get_running_loop().call_later(delay, self._token_due)

    def _token_due(self) -> None:
        self._token_timer = None
        if not self._closed:
            self._pump()

    def _next_deadline(self) -> float:
        slots, waiting = self._slots, self._waiting
        while slots and slots[0].state == FINISHED:
            slots.popleft()
        while waiting and waiting[0].state != WAITING:
            waiting.popleft()
        return min(slots[0].deadline if slots else math.inf,
                   waiting[0].wait_until if waiting else math.inf)

    def _arm(self) -> None:
        at = self._next_deadline()
        timer = self._timer
        if at == math.inf or (timer is not None and timer.when() <= at):
            return
        if timer is not None:
            timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(at, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = asyncio.get_running_loop().time()
        slots, waiting = self._slots, self._waiting
        while slots and (slots[0].state == FINISHED or slots[0].deadline <= now):
            sub = slots.popleft()
            if sub.state != FINISHED:
                what = "submit_sm_resp" if sub.state == WRITTEN else "bind to the carrier"
                self.finish(sub, SendResult(False, error=f"no {what} within {self.timeout_s} s",
                                            retryable=True))
        while waiting and (waiting[0].state != WAITING or waiting[0].wait_until <= now):
            sub = waiting.popleft()
            if sub.state == WAITING:
                self.finish(sub, SendResult(
                    False, retryable=True,
                    error=f"no send slot within {self.max_wait_s} s (window {self.window}, "
                          f"{self._in_flight} in flight)"))
        self._pump()
