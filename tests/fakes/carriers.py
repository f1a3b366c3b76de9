"""A scripted in-memory carrier implementing the CarrierAdapter contract, for unit tests only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from nodes.carriers.base import Ack, AckSink, Message, Receipt, ReceiptSink, SendResult
from replication.store_api import Channel


@dataclass
class Script:
    """What the fake carrier does with a message (decided per message by ``decide``)."""

    accept: bool = True
    retryable: bool = False
    receipt: str | None = "delivered"  # None: never send a receipt
    ack: bool = False
    delay_s: float = 0.0


@dataclass
class FakeCarrier:
    name: str
    channel: Channel
    decide: Callable[[Message], Script] = field(default=lambda m: Script())
    sent: list[Message] = field(default_factory=list)
    _receipt: ReceiptSink | None = None
    _ack: AckSink | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self, on_receipt: ReceiptSink, on_ack: AckSink) -> None:
        self._receipt, self._ack = on_receipt, on_ack

    async def send(self, message: Message) -> SendResult:
        return self._send_now(message)

    def _send_now(self, message: Message) -> SendResult:
        self.sent.append(message)
        script = self.decide(message)
        if not script.accept:
            return SendResult(False, error="refused by fake", retryable=script.retryable)
        msg_id = f"{self.name}-{len(self.sent)}"
        task = asyncio.create_task(self._later(message, script, msg_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return SendResult(True, carrier_message_id=msg_id)

    async def _later(self, message: Message, script: Script, msg_id: str) -> None:
        await asyncio.sleep(script.delay_s)
        if script.receipt is not None and self._receipt is not None:
            state = "delivered" if script.receipt == "delivered" else "failed"
            await self._receipt(Receipt(message.reference, msg_id, state))
        if script.ack and self._ack is not None:
            await self._ack(Ack(message.reference, message.ack))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def references(self) -> list[str]:
        return [m.reference for m in self.sent]


class _Queued:
    """A fake submission: sent at the next turn of the loop unless cancelled first."""

    def __init__(self, carrier: SubmittingCarrier, message: Message,
                 done: Callable[[SendResult], None]) -> None:
        self._handle = asyncio.get_running_loop().call_soon(self._go, carrier, message, done)
        self._done: Callable[[SendResult], None] | None = done

    def _go(self, carrier: SubmittingCarrier, message: Message,
            done: Callable[[SendResult], None]) -> None:
        result = carrier._send_now(message)
        if self._done is not None:
            self._done(result)

    def cancel(self) -> None:
        self._handle.cancel()
        self._done = None


@dataclass
class SubmittingCarrier(FakeCarrier):
    """The fake carrier with ``submit`` (``nodes.carriers.base.Submits``), as the SMPP adapter:
    the dispatcher makes first attempts by callbacks with it."""

    def submit(self, message: Message, done: Callable[[SendResult], None]) -> _Queued:
        return _Queued(self, message, done)


def both_kinds(**submitting: type) -> Any:
    """An autouse fixture running each test of the module twice: with carriers that only
    ``send`` (every attempt a coroutine), and with carriers that ``submit`` too, as the SMPP
    adapter (first attempts made by callbacks, ``nodes/callback_attempts.py``). ``submitting``
    names the module's carrier classes and what replaces each in the second run, e.g.
    ``_carriers = both_kinds(FakeCarrier=SubmittingCarrier)``."""

    @pytest.fixture(autouse=True, params=["send", "submit"])
    def carriers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
        if request.param == "submit":
            for name, replacement in submitting.items():
                monkeypatch.setattr(request.module, name, replacement)

    return carriers
