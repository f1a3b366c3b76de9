"""The carrier adapter contract, shared by the SMS (SMPP), e-mail (SMTP) and voice adapters.

* ``start`` connects (an SMPP bind_transceiver, ...) and registers where receipts and
  acknowledgements go. ``close`` unbinds and releases everything; both are idempotent.
* ``send`` submits one message and returns once the carrier accepted or refused it, within the
  adapter's timeout. It never raises for a carrier-side failure: the result says what happened
  (``accepted``; ``retryable`` for timeouts, throttling and transient errors; ``throttled`` when
  the carrier asked us to slow down). It raises only for programming errors.
* Every message carries an idempotency ``reference`` (campaign:recipient:channel:attempt) that
  the carrier can deduplicate on: SMPP puts it in the user_message_reference/receipted id
  mapping, SMTP in a ``Message-ID`` derived from it, voice in the request body.
* Delivery receipts (SMPP deliver_sm, voice call status) and acknowledgements (DTMF "1" on a call,
  an SMS reply, a link clicked in an e-mail) are handed to the sinks given to ``start``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from replication.store_api import AckRule, Channel

ReceiptState = Literal["delivered", "failed"]


@dataclass(frozen=True)
class Message:
    reference: str
    channel: Channel
    to: str  # E.164 number, or an e-mail address
    text: str
    ack: AckRule = "none"
    callback_url: str | None = None  # voice status/DTMF callbacks; e-mail acknowledgement link


@dataclass(frozen=True)
class SendResult:
    accepted: bool
    carrier_message_id: str | None = None
    error: str | None = None
    retryable: bool = False
    throttled: bool = False


@dataclass(frozen=True)
class Receipt:
    reference: str
    carrier_message_id: str | None
    state: ReceiptState
    detail: str | None = None


@dataclass(frozen=True)
class Ack:
    reference: str
    via: AckRule


class ReceiptSink(Protocol):
    """Where an adapter hands a delivery receipt. It must return at once (the dispatcher's
    wakes the attempt waiting for it): an adapter may call it from the loop reading its
    connection, which reads nothing more until it returns. Raising asks the carrier to deliver
    the receipt again, where the protocol allows it."""

    async def __call__(self, receipt: Receipt) -> None: ...


class AckSink(Protocol):
    async def __call__(self, ack: Ack) -> None: ...


class CarrierAdapter(Protocol):
    name: str
    channel: Channel

    async def start(self, on_receipt: ReceiptSink, on_ack: AckSink) -> None: ...
    async def send(self, message: Message) -> SendResult: ...
    async def close(self) -> None: ...


class Submitted(Protocol):
    def cancel(self) -> None:
        """Not written yet: never written, and its callback never called. Written already:
        the message is out, only its callback is dropped."""


@runtime_checkable
class Submits(Protocol):
    """An adapter that can also send without a coroutine (the SMPP adapter): the dispatcher
    then completes an attempt by callbacks, without a task per recipient
    (``nodes/callback_attempts.py``)."""

    def submit(self, message: Message,
               done: Callable[[SendResult], None]) -> SendResult | Submitted:
        """What ``send`` does, returning at once: the result when it is known at once (then
        ``done`` is never called), else a submission whose ``done`` is called exactly once,
        later, from the event loop (never from within ``submit``), with what ``send`` would
        have returned. Raises only where ``send`` raises."""
        ...
