"""The SMPP adapter against the simulated SMSC, in-process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import pytest_asyncio

from nodes.carriers import smpp_pdu as pdu
from nodes.carriers.base import Ack, Message
from nodes.carriers.sim.app import Simulator
from nodes.carriers.smpp import SmppAdapter
from nodes.carriers.smpp_pdu import Command, Status
from tests.carriers.support import (
    HOST,
    SMPP_PASSWORD,
    SMPP_USER,
    Collector,
    Control,
    SimFactory,
    adapter_factory,
    eventually,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

AdapterFactory = Callable[..., Awaitable[SmppAdapter]]


@pytest_asyncio.fixture
async def adapters(collector: Collector) -> AsyncIterator[AdapterFactory]:
    async with adapter_factory(collector, SmppAdapter, lambda sim: {
        "host": HOST, "port": sim.ports["smpp"], "system_id": SMPP_USER,
        "password": SMPP_PASSWORD, "timeout_s": 2.0}) as make:
        yield make


def sms(n: int | str, *, ack: str = "none", to: str = "+33612345678") -> Message:
    return Message(reference=f"7:{n}:sms:0", channel="sms", to=to, text=f"Alerte crue {n}",
                   ack=ack)  # type: ignore[arg-type]


async def test_bind_submit_and_receipt_round_trip(
    sim: Simulator, adapters: AdapterFactory, collector: Collector, control: Control,
) -> None:
    adapter = await adapters(sim)
    assert adapter.bound and adapter.binds == 1

    result = await adapter.send(sms(1))

    assert result.accepted and result.carrier_message_id
    await eventually(lambda: len(collector.receipts) == 1, what="the delivery receipt")
    receipt = collector.receipts[0]
    assert receipt.reference == "7:1:sms:0"
    assert receipt.carrier_message_id == result.carrier_message_id
    assert receipt.state == "delivered" and receipt.detail and "DELIVRD" in receipt.detail
    report = await control.report()
    assert report["sms"] == {"received": 1, "unique_references": 1, "duplicates": 0,
                             "delivered": 1}
    status, refs = await control.get("/references?channel=sms")
    assert status == 200 and refs == {"7:1:sms:0": 1}


async def test_messages_sms_cannot_carry_are_refused_not_raised(
    sim: Simulator, adapters: AdapterFactory, control: Control,
) -> None:
    adapter = await adapters(sim)
    for bad in (sms(1, ack="dtmf"), sms(2, to="+3361234567890123456789"),
                Message("réf:1", "sms", "+33600000001", "x")):
        result = await adapter.send(bad)
        assert not result.accepted and not result.retryable
        assert result.error and result.error.startswith("invalid message:")
    with pytest.raises(ValueError, match="channel"):
        await adapter.send(Message("1:1:voice:0", "voice", "+33600000000", "x"))
    assert (await adapter.send(sms(3))).accepted
    assert (await control.report())["sms"]["received"] == 1


async def test_wrong_password_fails_start(sim: Simulator, collector: Collector) -> None:
    adapter = SmppAdapter(host=HOST, port=sim.ports["smpp"], system_id=SMPP_USER,
                          password="wrong")
    with pytest.raises(ConnectionError, match="ESME_RINVPASWD"):
        await adapter.start(collector.on_receipt, collector.on_ack)
    await adapter.close()


async def test_200_messages_through_a_window_of_10(
    sim: Simulator, adapters: AdapterFactory, collector: Collector, control: Control,
) -> None:
    await control.set(channel="sms", mode="slow", delay_ms=20)
    adapter = await adapters(sim, window=10)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, adapter.in_flight)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    try:
        results = await asyncio.gather(*(adapter.send(sms(i)) for i in range(200)))
    finally:
        watcher.cancel()
    elapsed = time.monotonic() - started

    assert all(r.accepted for r in results)
    assert len({r.carrier_message_id for r in results}) == 200
    assert peak == 10
    # 20 rounds of 10 at 20 ms each: far less than the 4 s one at a time would take.
    assert elapsed < 2.5
    await eventually(lambda: len(collector.receipts) == 200, what="200 receipts")
    assert {r.reference for r in collector.receipts} == {f"7:{i}:sms:0" for i in range(200)}
    assert (await control.report())["sms"]["received"] == 200


async def test_throttle_gives_throttled_retryable_results(
    sim: Simulator, adapters: AdapterFactory, control: Control,
) -> None:
    adapter = await adapters(sim)
    await control.set(channel="sms", mode="throttle", throttle_per_s=0)
    result = await adapter.send(sms(1))
    assert not result.accepted and result.throttled and result.retryable
    assert result.error == "ESME_RTHROTTLED"

    await control.set(channel="sms", mode="throttle", throttle_per_s=5)
    results = await asyncio.gather(*(adapter.send(sms(i)) for i in range(20)))
    accepted = [r for r in results if r.accepted]
    assert 1 <= len(accepted) <= 6  # one second's burst at 5/s
    assert all(r.throttled for r in results if not r.accepted)
    assert (await control.report())["sms"]["received"] == len(accepted)


async def test_refuse_is_not_accepted(
    sim: Simulator, adapters: AdapterFactory, control: Control,
) -> None:
    adapter = await adapters(sim)
    await control.set(channel="sms", mode="refuse")
    permanent = await adapter.send(sms(1))
    assert not permanent.accepted and not permanent.retryable and not permanent.throttled
    assert permanent.error == "ESME_RSUBMITFAIL"

    await control.set(channel="sms", refuse_temporary=True)
    temporary = await adapter.send(sms(2))
    assert not temporary.accepted and temporary.retryable
    assert temporary.error == "ESME_RSYSERR"
    assert (await control.report())["sms"]["received"] == 0


async def test_timeout_is_retryable_within_the_adapter_timeout(
    sim: Simulator, adapters: AdapterFactory, control: Control,
) -> None:
    adapter = await adapters(sim, timeout_s=0.5)
    await control.set(channel="sms", mode="timeout")
    started = time.monotonic()
    result = await adapter.send(sms(1))
    elapsed = time.monotonic() - started
    assert not result.accepted and result.retryable and not result.throttled
    assert result.error and "0.5" in result.error
    assert 0.45 <= elapsed < 1.5

    await control.set(channel="sms", mode="normal")
    assert (await adapter.send(sms(2))).accepted  # the session survived the silence


async def test_dedup_changes_the_answers_never_the_counts(
    sim_factory: SimFactory, adapters: AdapterFactory, http: aiohttp.ClientSession,
) -> None:
    sim = await sim_factory(dedup=True)
    control = Control(http, sim)
    adapter = await adapters(sim)
    first = await adapter.send(sms(1))
    again = [await adapter.send(sms(1)) for _ in range(2)]
    other = await adapter.send(sms(2))

    assert first.accepted and other.accepted and all(r.accepted for r in again)
    # A deduplicating carrier answers a duplicate with the original message id.
    assert {r.carrier_message_id for r in again} == {first.carrier_message_id}
    report = await control.report()
    assert report["dedup"] is True
    # ...but a person behind it would still get every one: each is counted and logged.
    assert report["sms"] == {"received": 4, "unique_references": 2, "duplicates": 2,
                             "delivered": 4}
    assert report["totals"]["duplicates"] == 2
    _status, page = await control.get("/submissions?after=0")
    assert [(s["reference"], s["resubmission"]) for s in page["items"]] == [
        ("7:1:sms:0", False), ("7:1:sms:0", True), ("7:1:sms:0", True), ("7:2:sms:0", False)]
    assert len({s["message_id"] for s in page["items"]}) == 4  # the simulator's own ids


async def test_without_dedup_duplicates_are_delivered_and_counted(
    sim: Simulator, adapters: AdapterFactory, control: Control,
) -> None:
    adapter = await adapters(sim)
    results = [await adapter.send(sms(1)) for _ in range(3)]
    assert len({r.carrier_message_id for r in results}) == 3
    assert (await control.report())["sms"] == {"received": 3, "unique_references": 1,
                                               "duplicates": 2, "delivered": 3}


async def test_sms_reply_ack_reaches_the_ack_sink(
    sim: Simulator, adapters: AdapterFactory, collector: Collector, control: Control,
) -> None:
    adapter = await adapters(sim)
    assert (await adapter.send(sms(1, ack="reply"))).accepted
    assert (await adapter.send(sms(2))).accepted  # asked for no reply: gets none
    await eventually(lambda: len(collector.acks) == 1, what="the reply")
    assert collector.acks == [Ack("7:1:sms:0", via="reply")]

    await control.set(channel="sms", ack_rate=0)
    assert (await adapter.send(sms(3, ack="reply"))).accepted
    await eventually(lambda: len(collector.receipts) == 3, what="three receipts")
    await asyncio.sleep(0.1)
    assert len(collector.acks) == 1


async def test_drop_receipts(
    sim: Simulator, adapters: AdapterFactory, collector: Collector, control: Control,
) -> None:
    adapter = await adapters(sim)
    await control.set(channel="sms", drop_receipts=True)
    assert (await adapter.send(sms(1))).accepted
    await asyncio.sleep(0.2)
    assert collector.receipts == []


async def test_a_receipt_the_sink_failed_on_is_delivered_again(
    sim: Simulator, adapters: AdapterFactory, collector: Collector,
) -> None:
    # The adapter answers ESME_RX_T_APPN when the sink raises; the carrier delivers it again.
    adapter = await adapters(sim)
    collector.fail_receipts = 2
    result = await adapter.send(sms(1))
    assert result.accepted
    await eventually(lambda: len(collector.receipts) == 1, what="the redelivered receipt")
    assert collector.receipts[0].reference == "7:1:sms:0"
    assert collector.receipts[0].carrier_message_id == result.carrier_message_id


async def test_reconnects_after_the_carrier_restarts(
    sim_factory: SimFactory, adapters: AdapterFactory, collector: Collector,
) -> None:
    sim = await sim_factory()
    adapter = await adapters(sim, reconnect_min_s=0.05, reconnect_max_s=0.2, timeout_s=0.3)
    assert (await adapter.send(sms(1))).accepted
    port = sim.ports["smpp"]
    await sim.stop()
    await eventually(lambda: not adapter.bound, what="the adapter to notice")
    down = await adapter.send(sms(2))
    assert not down.accepted and down.retryable
    assert down.error == "no bind to the carrier within 0.3 s"

    await sim_factory(smpp_port=port)
    await eventually(lambda: adapter.bound, what="the rebind")
    assert adapter.binds == 2
    assert (await adapter.send(sms(3))).accepted


async def test_a_carrier_down_at_start_is_bound_once_it_answers(
    sim_factory: SimFactory, collector: Collector,
) -> None:
    """A site powered on boots its simulator beside its nodes: a node whose carrier does not
    answer yet starts anyway (the lab's node once exited, and systemd's start limit kept it
    down), its SMS channel down until the bind."""
    sim = await sim_factory()
    port = sim.ports["smpp"]
    await sim.stop()
    adapter = SmppAdapter(host=HOST, port=port, system_id=SMPP_USER, password=SMPP_PASSWORD,
                          timeout_s=0.3, reconnect_min_s=0.05, reconnect_max_s=0.2)
    try:
        await adapter.start(collector.on_receipt, collector.on_ack)
        assert not adapter.bound
        down = await adapter.send(sms(1))
        assert not down.accepted and down.retryable
        await sim_factory(smpp_port=port)
        await eventually(lambda: adapter.bound, what="the bind once the carrier answers")
        assert adapter.binds == 1
        assert (await adapter.send(sms(2))).accepted
    finally:
        await adapter.close()


async def test_send_waits_for_a_rebind_within_its_timeout(
    sim_factory: SimFactory, adapters: AdapterFactory,
) -> None:
    sim = await sim_factory()
    adapter = await adapters(sim, reconnect_min_s=0.05, reconnect_max_s=0.1, timeout_s=3.0)
    port = sim.ports["smpp"]
    await sim.stop()
    await eventually(lambda: not adapter.bound, what="the adapter to notice")
    pending = asyncio.create_task(adapter.send(sms(1)))
    await asyncio.sleep(0.2)
    await sim_factory(smpp_port=port)
    result = await pending
    assert result.accepted


# -- the simulator's protocol handling, on a raw socket -----------------------------------

async def _raw(sim: Simulator) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, sim.ports["smpp"])


async def _read(reader: asyncio.StreamReader) -> pdu.Header:
    header, _ = await asyncio.wait_for(pdu.read_pdu(reader), 2.0)
    return header


async def test_simulator_answers_garbage_with_generic_nack(sim: Simulator) -> None:
    reader, writer = await _raw(sim)
    try:
        writer.write(struct.pack("!IIII", 16, 0x00000777, 0, 41))  # unknown command id
        header = await _read(reader)
        assert (header.command, header.status, header.sequence) == (
            Command.GENERIC_NACK, Status.RINVCMDID, 41)

        submit = pdu.encode_submit_sm(42, pdu.ShortMessage("TENIR", "+33600000001", "x"))
        writer.write(submit)  # before any bind
        header = await _read(reader)
        assert (header.command, header.status) == (Command.SUBMIT_SM_RESP, Status.RINVBNDSTS)

        writer.write(pdu.encode_simple(Command.ENQUIRE_LINK, 43))
        header = await _read(reader)
        assert (header.command, header.sequence) == (Command.ENQUIRE_LINK_RESP, 43)

        writer.write(struct.pack("!IIII", 4, 4, 0, 44))  # impossible command_length
        header = await _read(reader)
        assert (header.command, header.status) == (Command.GENERIC_NACK, Status.RINVCMDLEN)
        assert await asyncio.wait_for(reader.read(), 2.0) == b""  # then it hangs up
    finally:
        writer.close()


async def test_simulator_checks_credentials_and_bind_state(sim: Simulator) -> None:
    reader, writer = await _raw(sim)
    try:
        writer.write(pdu.encode_bind_transceiver(1, "intruder", SMPP_PASSWORD))
        header = await _read(reader)
        assert (header.command, header.status) == (Command.BIND_TRANSCEIVER_RESP,
                                                   Status.RINVSYSID)
        writer.write(pdu.encode_bind_transceiver(2, SMPP_USER, SMPP_PASSWORD))
        assert (await _read(reader)).status == Status.ROK
        writer.write(pdu.encode_bind_transceiver(3, SMPP_USER, SMPP_PASSWORD))
        assert (await _read(reader)).status == Status.RALYBND
        writer.write(pdu.encode_simple(Command.UNBIND, 4))
        header = await _read(reader)
        assert (header.command, header.sequence) == (Command.UNBIND_RESP, 4)
    finally:
        writer.close()


async def test_a_receipt_whose_session_is_gone_reaches_another_session(
    sim_factory: SimFactory, adapters: AdapterFactory,
) -> None:
    sim = await sim_factory(receipt_delay_ms=300)
    node_a = await adapters(sim)
    other = Collector()
    node_b = SmppAdapter(host=HOST, port=sim.ports["smpp"], system_id=SMPP_USER,
                         password=SMPP_PASSWORD, name="node-b")
    await node_b.start(other.on_receipt, other.on_ack)
    try:
        result = await node_a.send(sms(1, ack="reply"))
        assert result.accepted
        await node_a.close()  # node A goes away before the receipt is due
        await eventually(lambda: len(other.receipts) == 1 and len(other.acks) == 1,
                         what="node B to get node A's receipt and reply")
        assert other.receipts[0].reference == "7:1:sms:0"
        assert other.receipts[0].carrier_message_id == result.carrier_message_id
        assert other.acks == [Ack("7:1:sms:0", via="reply")]
    finally:
        await node_b.close()
