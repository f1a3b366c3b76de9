"""The SMTP adapter against the simulated relay, in-process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import pytest_asyncio

from nodes.carriers.base import Message
from nodes.carriers.sim.app import Simulator
from nodes.carriers.smtp import SmtpAdapter, message_id_for, reference_from_message_id
from tests.carriers.support import (
    HOST,
    Collector,
    Control,
    NodeApi,
    SimFactory,
    adapter_factory,
    eventually,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

AdapterFactory = Callable[..., Awaitable[SmtpAdapter]]


@pytest_asyncio.fixture
async def adapters(collector: Collector) -> AsyncIterator[AdapterFactory]:
    async with adapter_factory(collector, SmtpAdapter, lambda sim: {
        "host": HOST, "port": sim.ports["smtp"], "sender": "alerte@prefecture.tenir.test",
        "timeout_s": 2.0}) as make:
        yield make


def mail(n: int | str, *, ack: str = "none", callback_url: str | None = None) -> Message:
    return Message(reference=f"9:{n}:email:0", channel="email", to=f"agent{n}@mairie.test",
                   text=f"Cellule de crise activée ({n})", ack=ack,  # type: ignore[arg-type]
                   callback_url=callback_url)


async def test_send_is_accepted_with_an_immediate_delivered_receipt(
    sim: Simulator, adapters: AdapterFactory, collector: Collector, control: Control,
) -> None:
    adapter = await adapters(sim)
    results = await asyncio.gather(*(adapter.send(mail(i)) for i in range(10)))

    assert all(r.accepted for r in results)
    assert results[0].carrier_message_id == message_id_for("9:0:email:0",
                                                           "prefecture.tenir.test")
    await eventually(lambda: len(collector.receipts) == 10, what="ten receipts")
    assert all(r.state == "delivered" for r in collector.receipts)
    assert {r.reference for r in collector.receipts} == {f"9:{i}:email:0" for i in range(10)}
    _, refs = await control.get("/references?channel=email")
    assert refs == {f"9:{i}:email:0": 1 for i in range(10)}


async def test_5xx_refusal_is_not_retryable_and_4xx_is(
    sim: Simulator, adapters: AdapterFactory, control: Control, collector: Collector,
) -> None:
    adapter = await adapters(sim)
    await control.set(channel="email", mode="refuse")
    permanent = await adapter.send(mail(1))
    assert not permanent.accepted and not permanent.retryable
    assert permanent.error and permanent.error.startswith("554")

    await control.set(channel="email", refuse_temporary=True)
    temporary = await adapter.send(mail(2))
    assert not temporary.accepted and temporary.retryable and not temporary.throttled
    assert temporary.error and temporary.error.startswith("451")

    await control.set(channel="email", mode="throttle", throttle_per_s=0)
    throttled = await adapter.send(mail(3))
    assert not throttled.accepted and throttled.retryable and throttled.throttled

    await control.set(channel="email", mode="normal")
    assert (await adapter.send(mail(4))).accepted  # the pool recovered from the refusals
    await asyncio.sleep(0.05)
    assert [r.reference for r in collector.receipts] == ["9:4:email:0"]
    assert (await control.report())["email"]["received"] == 1


async def test_timeout_is_retryable_within_the_adapter_timeout(
    sim: Simulator, adapters: AdapterFactory, control: Control,
) -> None:
    adapter = await adapters(sim, timeout_s=0.5)
    await control.set(channel="email", mode="timeout")
    started = time.monotonic()
    result = await adapter.send(mail(1))
    assert not result.accepted and result.retryable
    assert time.monotonic() - started < 1.5
    await control.set(channel="email", mode="normal")
    assert (await adapter.send(mail(2))).accepted


async def test_ack_link_is_clicked(
    sim: Simulator, adapters: AdapterFactory, control: Control, node_api: NodeApi,
) -> None:
    adapter = await adapters(sim)
    link = f"{node_api.url}/ack/9:1:email:0"
    assert (await adapter.send(mail(1, ack="link", callback_url=link))).accepted
    assert (await adapter.send(mail(2))).accepted  # no link, no click
    await eventually(lambda: node_api.clicks == ["9:1:email:0"], what="the click")
    # as a person would: the page opened (GET, which acknowledges nothing), its button pressed
    assert node_api.opened == ["9:1:email:0"]

    await control.set(channel="email", ack_rate=0)
    link3 = f"{node_api.url}/ack/9:3:email:0"
    assert (await adapter.send(mail(3, ack="link", callback_url=link3))).accepted
    await asyncio.sleep(0.15)
    assert node_api.clicks == ["9:1:email:0"]


async def test_dedup_relay_still_counts_every_duplicate_delivered(
    sim_factory: SimFactory, adapters: AdapterFactory, http: aiohttp.ClientSession,
) -> None:
    sim = await sim_factory(dedup=True)
    adapter = await adapters(sim)
    for _ in range(3):
        assert (await adapter.send(mail(1))).accepted
    report = await Control(http, sim).report()
    assert report["email"] == {"received": 3, "unique_references": 1, "duplicates": 2,
                               "delivered": 3}
    items = sim.state.submissions.page(0)["items"]
    assert [(s["channel"], s["resubmission"]) for s in items] == [
        ("email", False), ("email", True), ("email", True)]


async def test_messages_email_cannot_carry_are_refused_and_wiring_errors_raise(
    sim: Simulator, adapters: AdapterFactory, control: Control,
) -> None:
    adapter = await adapters(sim)
    no_link = await adapter.send(mail(1, ack="link"))
    assert not no_link.accepted and not no_link.retryable
    assert no_link.error == "invalid message: callback_url: required when ack is 'link'"
    dtmf = await adapter.send(mail(2, ack="dtmf"))
    assert not dtmf.accepted and not dtmf.retryable and dtmf.error and "ack:" in dtmf.error
    with pytest.raises(ValueError, match="channel"):
        await adapter.send(Message("1:1:sms:0", "sms", "+33600000000", "x"))
    assert (await control.report())["email"]["received"] == 0


async def test_a_relay_down_at_start_is_a_channel_down_not_a_failed_start(
    sim_factory: SimFactory, collector: Collector,
) -> None:
    """The node starts with its relay down (a site powered on boots both at once): sends fail
    retryable until the relay answers, then go through."""
    sim = await sim_factory()
    port = sim.ports["smtp"]
    await sim.stop()
    adapter = SmtpAdapter(host=HOST, port=port, sender="a@b.test", timeout_s=1.0)
    try:
        await adapter.start(collector.on_receipt, collector.on_ack)
        down = await adapter.send(mail(1))
        assert not down.accepted and down.retryable
        await sim_factory(smtp_port=port)
        assert (await adapter.send(mail(2))).accepted
    finally:
        await adapter.close()


@pytest.mark.parametrize("reference", ["12:345:email:1", "a_b-c", "x"])
async def test_message_id_round_trips_the_reference(reference: str) -> None:
    message_id = message_id_for(reference, "example.org")
    assert message_id.startswith("<") and message_id.endswith("@example.org>")
    assert ":" not in message_id.split("@")[0]
    assert reference_from_message_id(message_id) == reference


async def test_unusual_reference_gets_a_stable_digest_message_id() -> None:
    odd = "réf/with spaces"
    assert message_id_for(odd, "x.test") == message_id_for(odd, "x.test")
    assert reference_from_message_id(message_id_for(odd, "x.test")) is None
