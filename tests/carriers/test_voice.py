"""The voice adapter against the simulated call-control API, in-process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from nodes.carriers.base import Ack, Message
from nodes.carriers.callback_auth import CallbackVerifier
from nodes.carriers.sim.app import Simulator
from nodes.carriers.sim.state import ChannelSettings
from nodes.carriers.sim.voice_server import call_outcome
from nodes.carriers.voice import VoiceAdapter
from tests.carriers.support import (
    HOST,
    VOICE_CALLBACK_SECRET,
    Collector,
    Control,
    NodeApi,
    adapter_factory,
    eventually,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

AdapterFactory = Callable[..., Awaitable[VoiceAdapter]]


@pytest_asyncio.fixture
async def adapters(collector: Collector, node_api: NodeApi) -> AsyncIterator[AdapterFactory]:
    async with adapter_factory(collector, VoiceAdapter, lambda sim: {
        "base_url": f"http://{HOST}:{sim.ports['voice']}",
        "callback_url": f"{node_api.url}/voice/callback", "timeout_s": 2.0}) as make:
        yield make


def call(n: int | str, *, ack: str = "dtmf") -> Message:
    return Message(reference=f"5:{n}:voice:0", channel="voice", to="+33491000042",
                   text="Alerte industrielle: confinez-vous. Tapez 1.",
                   ack=ack)  # type: ignore[arg-type]


async def test_call_is_answered_and_acknowledged_by_dtmf(
    sim: Simulator, adapters: AdapterFactory, collector: Collector, node_api: NodeApi,
    control: Control,
) -> None:
    adapter = await adapters(sim)
    result = await adapter.send(call(1))
    assert result.accepted and result.carrier_message_id
    assert result.carrier_message_id.startswith("call-")

    await eventually(lambda: len(node_api.callbacks) == 1, what="the call status callback")
    payload = node_api.callbacks[0]
    assert payload == {"reference": "5:1:voice:0", "call_id": result.carrier_message_id,
                       "status": "answered", "dtmf": "1"}
    # signed with the secret the node knows, over this very body, and only once
    body, signature = node_api.callback_bodies[0]
    verifier = CallbackVerifier([VOICE_CALLBACK_SECRET])
    assert verifier.verify(signature, body + b" ") == "carrier_bad_signature"
    assert CallbackVerifier(["another-secret-of-32-characters-at-least"]).verify(
        signature, body) == "carrier_bad_signature"
    assert verifier.verify(signature, body) == "ok"
    assert verifier.verify(signature, body) == "replayed"
    # What the node's callback route does with it:
    receipt, ack = await adapter.handle_callback(payload)
    assert receipt.state == "delivered" and receipt.carrier_message_id == result.carrier_message_id
    assert ack == Ack("5:1:voice:0", via="dtmf")
    assert collector.receipts == [receipt] and collector.acks == [ack]
    assert (await control.report())["voice"]["received"] == 1


async def test_outcomes_are_reproducible_from_the_reference(
    sim: Simulator, adapters: AdapterFactory, node_api: NodeApi, control: Control,
) -> None:
    await control.set(channel="voice", answer_rate=0.5, ack_rate=0.5)
    adapter = await adapters(sim)
    for n in range(30):
        assert (await adapter.send(call(n))).accepted
    await eventually(lambda: len(node_api.callbacks) == 30, what="30 callbacks")

    settings = ChannelSettings(answer_rate=0.5, ack_rate=0.5)
    seen = {(p["reference"], p["status"], p["dtmf"]) for p in node_api.callbacks}
    expected = {(f"5:{n}:voice:0", *call_outcome(f"5:{n}:voice:0", "dtmf", settings))
                for n in range(30)}
    assert seen == expected
    statuses = {status for _, status, _ in seen}
    assert "answered" in statuses and statuses - {"answered"}  # both kinds at 50 %
    assert {dtmf for _, status, dtmf in seen if status != "answered"} == {None}


async def test_call_without_ack_request_gets_no_dtmf(
    sim: Simulator, adapters: AdapterFactory, node_api: NodeApi,
) -> None:
    adapter = await adapters(sim)
    assert (await adapter.send(call(1, ack="none"))).accepted
    await eventually(lambda: len(node_api.callbacks) == 1, what="the callback")
    assert node_api.callbacks[0]["status"] == "answered"
    assert node_api.callbacks[0]["dtmf"] is None


async def test_throttle_refuse_and_timeout(
    sim: Simulator, adapters: AdapterFactory, control: Control,
) -> None:
    adapter = await adapters(sim, timeout_s=0.5)
    await control.set(channel="voice", mode="throttle", throttle_per_s=0)
    throttled = await adapter.send(call(1))
    assert not throttled.accepted and throttled.throttled and throttled.retryable
    assert throttled.error and throttled.error.startswith("HTTP 429")

    await control.set(channel="voice", mode="refuse")
    refused = await adapter.send(call(2))
    assert not refused.accepted and not refused.retryable
    assert refused.error and refused.error.startswith("HTTP 403")

    await control.set(channel="voice", refuse_temporary=True)
    unavailable = await adapter.send(call(3))
    assert not unavailable.accepted and unavailable.retryable
    assert unavailable.error and unavailable.error.startswith("HTTP 503")

    await control.set(channel="voice", mode="timeout")
    started = time.monotonic()
    silent = await adapter.send(call(4))
    assert not silent.accepted and silent.retryable
    assert time.monotonic() - started < 1.5

    await control.set(channel="voice", mode="normal")
    assert (await adapter.send(call(5))).accepted
    assert (await control.report())["voice"]["received"] == 1


async def test_drop_receipts_sends_no_callback(
    sim: Simulator, adapters: AdapterFactory, node_api: NodeApi, control: Control,
) -> None:
    await control.set(channel="voice", drop_receipts=True)
    adapter = await adapters(sim)
    assert (await adapter.send(call(1))).accepted
    await asyncio.sleep(0.15)
    assert node_api.callbacks == []


async def test_messages_a_call_cannot_carry_are_refused(
    sim: Simulator, adapters: AdapterFactory,
) -> None:
    adapter = await adapters(sim, callback_url=None)
    no_callback = await adapter.send(call(1))
    assert not no_callback.accepted and not no_callback.retryable
    assert no_callback.error == ("invalid message: callback_url: required "
                                 "(in the message or the adapter)")
    reply = await adapter.send(Message("5:2:voice:0", "voice", "+33491000042", "x",
                                       ack="reply", callback_url="http://127.0.0.1:9/cb"))
    assert not reply.accepted and reply.error and "ack:" in reply.error


async def test_bad_call_request_is_refused_naming_the_field(
    sim: Simulator, adapters: AdapterFactory,
) -> None:
    adapter = await adapters(sim)
    bad = Message(reference="5:1:voice:0", channel="voice", to="not-a-number", text="x")
    result = await adapter.send(bad)
    assert not result.accepted and not result.retryable
    assert result.error == "HTTP 400: to: must be a phone number"
