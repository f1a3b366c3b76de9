"""Pieces of the carrier code that need no server: flow control, masking, callback parsing,
receipt texts, the control payload validation and the JSON log formatter."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from nodes.carriers import smpp_pdu as pdu
from nodes.carriers.base import Ack
from nodes.carriers.flow import FlowControl, LocalBusy, TokenBucket
from nodes.carriers.redact import mask_email, mask_phone
from nodes.carriers.sim.jsonlog import JsonFormatter
from nodes.carriers.sim.state import ControlError, SimState, fraction, parse_control
from nodes.carriers.voice import CallbackError, parse_voice_callback
from tests.fakes.clock import Monotonic

pytestmark = pytest.mark.unit


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = Monotonic(100.0)
    bucket = TokenBucket(10, burst=5, clock=clock)
    assert [bucket.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 0.25  # 2.5 tokens
    assert [bucket.try_acquire() for _ in range(3)] == [True, True, False]
    clock.now += 60
    assert bucket.tokens == 5


def test_token_bucket_of_rate_zero_grants_nothing() -> None:
    bucket = TokenBucket(0)
    assert not bucket.try_acquire()
    with pytest.raises(ValueError):
        TokenBucket(-1)


@pytest.mark.asyncio
async def test_token_bucket_acquire_spaces_callers() -> None:
    bucket = TokenBucket(50, burst=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(6):
        await bucket.acquire()
    assert loop.time() - started >= 0.09  # 5 waits of 20 ms after the first token


@pytest.mark.asyncio
async def test_flow_control_bounds_the_window_and_the_wait() -> None:
    flow = FlowControl(window=2, max_wait_s=0.05)
    async with flow.slot(), flow.slot():
        assert flow.in_flight == 2
        with pytest.raises(LocalBusy):
            async with flow.slot():
                pass
    assert flow.in_flight == 0
    async with flow.slot():
        assert flow.in_flight == 1


@pytest.mark.asyncio
async def test_flow_control_rate_limits_slots_taken_at_once() -> None:
    """A free window slot is taken without waiting only with a token: the rate still holds."""
    flow = FlowControl(window=10, rate_per_s=10)  # a burst of 10, then one per 0.1 s
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(12):
        async with flow.slot():
            pass
    assert loop.time() - started >= 0.15  # two waits of 0.1 s after the burst


def test_masking() -> None:
    assert mask_phone("+33612345678") == "+*********78"
    assert mask_phone("0612345678") == "********78"
    assert mask_phone("7") == "7"
    assert mask_email("jeanne.martin@example.org") == "j***@example.org"
    assert mask_email("nonsense") == "***"


def test_parse_voice_callback() -> None:
    receipt, ack = parse_voice_callback({"reference": "1:2:voice:0", "call_id": "c1",
                                         "status": "answered", "dtmf": "1"})
    assert (receipt.reference, receipt.carrier_message_id, receipt.state) == (
        "1:2:voice:0", "c1", "delivered")
    assert ack == Ack("1:2:voice:0", via="dtmf")

    receipt, ack = parse_voice_callback({"reference": "r", "call_id": "c", "status": "busy",
                                         "dtmf": None})
    assert receipt.state == "failed" and receipt.detail == "busy" and ack is None
    _, ack = parse_voice_callback({"reference": "r", "call_id": "c", "status": "answered",
                                   "dtmf": "9"})
    assert ack is None


@pytest.mark.parametrize(("payload", "field"), [
    ([], "body"),
    ({"call_id": "c", "status": "answered"}, "reference"),
    ({"reference": " ", "status": "answered"}, "reference"),
    ({"reference": "r", "call_id": 5, "status": "answered"}, "call_id"),
    ({"reference": "r", "status": "ringing"}, "status"),
    ({"reference": "r", "status": "answered", "dtmf": 1}, "dtmf"),
])
def test_parse_voice_callback_names_the_bad_field(payload: object, field: str) -> None:
    with pytest.raises(CallbackError) as info:
        parse_voice_callback(payload)
    assert info.value.field == field


def test_receipt_text_round_trip() -> None:
    from datetime import datetime

    at = datetime(2025, 3, 1, 12, 30)
    text = pdu.receipt_text("abc123", "DELIVRD", 0, "Alerte: évacuation immédiate du site", at,
                            at)
    assert text.startswith("id:abc123 sub:001 dlvrd:001 submit date:2503011230 ")
    fields = pdu.parse_receipt_text(text)
    assert fields["id"] == "abc123" and fields["stat"] == "DELIVRD" and fields["err"] == "000"
    assert fields["text"] == "Alerte: évacuation i"
    # Another SMSC's field order and case.
    other = pdu.parse_receipt_text("id:9 sub:001 dlvrd:000 stat:UNDELIV err:005 Text:x y:z")
    assert other["stat"] == "UNDELIV" and other["text"] == "x y:z"


def test_control_validation_and_outcomes_are_deterministic() -> None:
    channels, changes = parse_control({"channel": "all", "mode": "slow", "delay_ms": 5})
    assert channels == ("sms", "email", "voice") and changes == {"mode": "slow", "delay_ms": 5}
    with pytest.raises(ControlError, match=r"^ack_rate:"):
        parse_control({"channel": "sms", "ack_rate": float("nan")})
    assert fraction("1:2:sms:0", "ack") == fraction("1:2:sms:0", "ack")
    assert fraction("1:2:sms:0", "ack") != fraction("1:2:sms:0", "answer")
    state = SimState("paris", dedup=True)
    first = state.record("sms", "r", "id1")
    again = state.record("sms", "r", "id2")
    assert (first.duplicate, first.answer_new, first.carrier_id) == (False, True, "id1")
    assert (again.duplicate, again.answer_new, again.carrier_id) == (True, False, "id1")
    assert state.report()["sms"]["delivered"] == 2  # counted as a non-deduplicating carrier


def test_json_formatter_masks_what_callers_forgot() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "bound %s", ("x",), None)
    record.password = "hunter2"
    record.to = "+33612345678"
    record.reference = "1:2:sms:0"
    line = json.loads(JsonFormatter({"site": "paris"}).format(record))
    assert line["msg"] == "bound x" and line["site"] == "paris"
    assert line["password"] == "***" and line["to"] == "+*********78"
    assert line["reference"] == "1:2:sms:0"
