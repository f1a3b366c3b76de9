"""First attempts made by callbacks (``nodes/callback_attempts.py``), driven by hand: a carrier
whose answers and receipts the test gives, in the order it chooses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from nodes.carriers.base import AckSink, Message, Receipt, ReceiptSink, SendResult
from nodes.dispatcher import Dispatcher, DispatcherConfig
from replication.store_api import ChannelStep, Outcome, ScenarioIn
from tests.fakes.memory_store import MemoryStore

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

SMS_RETRY = ChannelStep("sms", {"fr": "Alerte"}, retries=1, retry_interval_s=0.0)


@dataclass
class Handle:
    message: Message
    done: Callable[[SendResult], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class ByHand:
    """``submit`` keeps each submission for the test to answer; ``send`` (the coroutine's
    retries) accepts at once and delivers its receipt at the next turn of the loop."""

    name: str = "sms-hand"
    channel: str = "sms"
    submitted: list[Handle] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)
    on_receipt: ReceiptSink | None = None

    async def start(self, on_receipt: ReceiptSink, on_ack: AckSink) -> None:
        self.on_receipt = on_receipt

    def submit(self, message: Message, done: Callable[[SendResult], None]) -> Handle:
        handle = Handle(message, done)
        self.submitted.append(handle)
        return handle

    async def send(self, message: Message) -> SendResult:
        self.sent.append(message)
        asyncio.get_running_loop().call_soon(
            lambda: asyncio.ensure_future(self.receipt(message.reference, "delivered")))
        return SendResult(True, carrier_message_id=f"m-{message.reference}")

    async def receipt(self, reference: str, state: str) -> None:
        assert self.on_receipt is not None
        await self.on_receipt(Receipt(reference, f"m-{reference}", state))  # type: ignore[arg-type]

    async def close(self) -> None:
        pass


def outcomes(store: MemoryStore) -> list[Outcome]:
    return sorted((row.outcome for row in store._attempts.values()),
                  key=lambda o: (o.recipient_id, o.step, o.attempt))


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


async def until_sent(store: MemoryStore, campaign: int, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while (await store.campaign_summary(campaign)).pending:
            await asyncio.sleep(0.005)


async def setup(population: int, **config: float) -> tuple[MemoryStore, int, ByHand, Dispatcher]:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms", (SMS_RETRY,)))
    campaign = await store.launch_campaign("sms", "op", population=population,
                                           batch_size=population)
    carrier = ByHand()
    d = Dispatcher(store, {"sms": carrier},  # type: ignore[dict-item]
                   DispatcherConfig(node="paris-node1", site="paris", idle_poll_s=0.01,
                                    **config))  # type: ignore[arg-type]
    await carrier.start(d.on_receipt, d.on_ack)
    return store, campaign, carrier, d


async def test_a_receipt_read_before_the_carriers_answer_completes_the_attempt() -> None:
    store, campaign, carrier, d = await setup(3)
    running = asyncio.create_task(d.run())
    try:
        await until(lambda: len(carrier.submitted) == 3)
        for h in carrier.submitted:  # the receipt first, then the submit_sm_resp
            await carrier.receipt(h.message.reference, "delivered")
            h.done(SendResult(True, carrier_message_id=f"m-{h.message.reference}"))
        await until_sent(store, campaign)
    finally:
        d.request_stop("drain")
        await running
    got = outcomes(store)
    assert [(o.state, o.final, o.attempt) for o in got] == [("delivered", True, 0)] * 3
    assert carrier.sent == []  # no coroutine was needed
    assert d.stats.sent == {("sms", "sms-hand", "accepted"): 3}


async def test_a_failed_first_attempt_is_retried_by_the_coroutine_and_both_are_recorded() -> None:
    store, campaign, carrier, d = await setup(2, receipt_timeout_s=0.2)
    running = asyncio.create_task(d.run())
    try:
        await until(lambda: len(carrier.submitted) == 2)
        first, second = carrier.submitted
        first.done(SendResult(True, carrier_message_id="m1"))
        await carrier.receipt(first.message.reference, "failed")  # refused by the handset
        second.done(SendResult(True, carrier_message_id="m2"))  # and no receipt ever
        await until_sent(store, campaign)
    finally:
        d.request_stop("drain")
        await running
    got = [(o.recipient_id, o.state, o.attempt, o.final, o.detail) for o in outcomes(store)]
    r1, r2 = sorted({o.recipient_id for o in outcomes(store)})
    assert got == [(r1, "failed", 0, False, None), (r1, "delivered", 1, True, None),
                   (r2, "failed", 0, False, "no delivery receipt"),
                   (r2, "delivered", 1, True, None)]
    assert sorted(m.reference.rsplit(":", 1)[1] for m in carrier.sent) == ["0.1", "0.1"]


async def test_a_batch_stopped_at_once_withdraws_what_is_not_sent_and_ignores_late_answers(
) -> None:
    store, campaign, carrier, d = await setup(4, drain_deadline_s=0.1)
    running = asyncio.create_task(d.run())
    await until(lambda: len(carrier.submitted) == 4)
    answered = carrier.submitted[0]
    answered.done(SendResult(True, carrier_message_id="m1"))
    d.request_stop("now")
    await running
    assert [h.cancelled for h in carrier.submitted] == [False, True, True, True]
    for h in carrier.submitted:  # a carrier that answers anyway: nothing is recorded
        h.done(SendResult(True, carrier_message_id="late"))
    await carrier.receipt(answered.message.reference, "delivered")
    await asyncio.sleep(0.05)
    assert outcomes(store) == []
    assert not d.awaiting(answered.message.reference)
    assert (await store.campaign_summary(campaign)).pending == 4  # released for another node
