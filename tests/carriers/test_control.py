"""The simulator's control API."""

from __future__ import annotations

from typing import Any

import pytest

from nodes.carriers.sim.app import Simulator
from tests.carriers.support import Control

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest.mark.parametrize(("payload", "field"), [
    ({"mode": "refuse"}, "channel"),
    ({"channel": "fax", "mode": "refuse"}, "channel"),
    ({"channel": "sms", "mode": "explode"}, "mode"),
    ({"channel": "sms", "delay_ms": -1}, "delay_ms"),
    ({"channel": "sms", "delay_ms": 1.5}, "delay_ms"),
    ({"channel": "sms", "delay_ms": True}, "delay_ms"),
    ({"channel": "email", "throttle_per_s": "fast"}, "throttle_per_s"),
    ({"channel": "voice", "drop_receipts": "yes"}, "drop_receipts"),
    ({"channel": "all", "ack_rate": 1.5}, "ack_rate"),
    ({"channel": "voice", "answer_rate": -0.1}, "answer_rate"),
    ({"channel": "sms", "refuse_temporary": 1}, "refuse_temporary"),
    ({"channel": "sms", "volume": 11}, "volume"),
    ([1, 2], "body"),
    ("not json", "body"),
])
async def test_control_rejects_bad_input_naming_the_field(
    control: Control, payload: Any, field: str,
) -> None:
    before = (await control.get("/control"))[1]
    status, body = await control.post_raw("/control", payload)
    assert status == 400
    assert body["field"] == field
    assert body["error"].startswith(f"{field}:")
    assert (await control.get("/control"))[1] == before  # nothing applied


async def test_control_applies_to_one_channel_or_all(control: Control) -> None:
    settings = await control.set(channel="sms", mode="slow", delay_ms=250)
    assert settings["sms"]["mode"] == "slow" and settings["sms"]["delay_ms"] == 250
    assert settings["email"]["mode"] == "normal"

    settings = await control.set(channel="all", mode="throttle", throttle_per_s=3,
                                 drop_receipts=True, ack_rate=0.25, answer_rate=0.5)
    for channel in ("sms", "email", "voice"):
        assert settings[channel] == {
            "mode": "throttle", "delay_ms": 250 if channel == "sms" else 0,
            "throttle_per_s": 3.0, "drop_receipts": True, "ack_rate": 0.25,
            "answer_rate": 0.5, "refuse_temporary": False}


async def test_healthz_report_references_and_reset(sim: Simulator, control: Control) -> None:
    status, body = await control.get("/healthz")
    assert status == 200 and body == {"ok": True, "site": "paris"}

    sim.state.record("sms", "1:1:sms:0", "id1")
    sim.state.record("sms", "1:1:sms:0", "id2")
    sim.state.record("voice", "1:1:voice:0", "id3")
    report = await control.report()
    assert report["sms"] == {"received": 2, "unique_references": 1, "duplicates": 1,
                             "delivered": 2}
    assert report["totals"] == {"received": 3, "unique_references": 2, "duplicates": 1,
                                "delivered": 3}
    assert (await control.get("/references?channel=sms")) == (200, {"1:1:sms:0": 2})
    status, body = await control.get("/references?channel=pigeon")
    assert status == 400 and body["field"] == "channel"

    status, body = await control.post_raw("/reset", {})
    assert status == 200 and body["totals"]["received"] == 0
    assert (await control.report())["sms"]["received"] == 0
