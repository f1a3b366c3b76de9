"""Scenarios: steps validated (channel, templates with 'fr', retries, acknowledgement rule
consistent with the channel, priority) before anything is stored."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.api.conftest import AUDITOR, EMAIL_STEP, OPERATOR, SMS_STEP, VOICE_STEP, Client, auth
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit

VALID: dict[str, Any] = {"name": "inondation", "priority": 1,
                         "steps": [VOICE_STEP, SMS_STEP, EMAIL_STEP]}


def variant(path: list[Any], value: Any) -> dict[str, Any]:
    """VALID with the member at ``path`` set to ``value`` (or removed if value is ...)."""
    body = copy.deepcopy(VALID)
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


@pytest.mark.asyncio
async def test_scenario_is_created_listed_and_read_back(client: Client) -> None:
    r = await client.post("/api/v1/scenarios", headers=auth(OPERATOR), json=VALID)
    assert r.status == 201, await r.text()
    created = await r.json()
    assert r.headers["Location"] == "/api/v1/scenarios/inondation"
    assert created["priority"] == 1
    assert [s["channel"] for s in created["steps"]] == ["voice", "sms", "email"]
    assert created["steps"][1] == {"channel": "sms", "templates": SMS_STEP["templates"],
                                   "retries": 1, "retry_interval_s": 2.0, "ack": "none",
                                   "ack_timeout_s": 60.0}
    r = await client.get("/api/v1/scenarios/inondation", headers=auth(AUDITOR))
    assert await r.json() == created
    r = await client.get("/api/v1/scenarios", headers=auth(AUDITOR))
    assert (await r.json())["items"] == [created]


@pytest.mark.asyncio
async def test_reply_on_sms_is_a_valid_acknowledgement(client: Client) -> None:
    body = {"name": "sms-reply", "steps": [{**SMS_STEP, "ack": "reply", "retries": 0}]}
    r = await client.post("/api/v1/scenarios", headers=auth(OPERATOR), json=body)
    assert r.status == 201, await r.text()


@pytest.mark.asyncio
@pytest.mark.parametrize(("body", "field"), [
    (variant(["steps", 0, "ack"], "reply"), "steps[0].ack"),  # reply on voice
    (variant(["steps", 1, "ack"], "dtmf"), "steps[1].ack"),  # dtmf on sms
    (variant(["steps", 1, "ack"], "link"), "steps[1].ack"),  # link on sms
    (variant(["steps", 2, "ack"], "dtmf"), "steps[2].ack"),  # dtmf on email
    (variant(["steps", 0, "ack"], "smoke-signal"), "steps[0].ack"),
    (variant(["steps", 0, "channel"], "fax"), "steps[0].channel"),
    (variant(["steps", 0, "channel"], ...), "steps[0].channel"),
    (variant(["steps", 1, "templates"], {"en": "Alert"}), "steps[1].templates.fr"),
    (variant(["steps", 1, "templates"], {"fr": "   "}), "steps[1].templates.fr"),
    (variant(["steps", 1, "templates"], {"fr": "x", "klingon": "y"}),
     "steps[1].templates.klingon"),
    (variant(["steps", 1, "templates"], "Alerte"), "steps[1].templates"),
    (variant(["steps", 1, "retries"], 11), "steps[1].retries"),
    (variant(["steps", 1, "retries"], -1), "steps[1].retries"),
    (variant(["steps", 1, "retries"], "2"), "steps[1].retries"),
    (variant(["steps", 1, "retries"], True), "steps[1].retries"),
    (variant(["steps", 1, "retries"], 1.5), "steps[1].retries"),
    (variant(["steps", 1, "retry_interval_s"], 0), "steps[1].retry_interval_s"),
    (variant(["steps", 0, "ack_timeout_s"], 0), "steps[0].ack_timeout_s"),
    (variant(["steps", 0, "speed"], "fast"), "steps[0].speed"),
    (variant(["steps", 0], "voice"), "steps[0]"),
    (variant(["steps"], []), "steps"),
    (variant(["steps"], ...), "steps"),
    (variant(["priority"], 0), "priority"),
    (variant(["priority"], 10), "priority"),
    (variant(["name"], ""), "name"),
    (variant(["name"], "a/b"), "name"),
    (variant(["name"], 7), "name"),
    (variant(["owner"], "me"), "owner"),
])
async def test_invalid_scenario_is_refused_naming_the_field_and_nothing_is_stored(
    client: Client, store: MemoryStore, body: dict[str, Any], field: str,
) -> None:
    r = await client.post("/api/v1/scenarios", headers=auth(OPERATOR), json=body)
    assert r.status == 422, await r.text()
    assert (await r.json())["field"] == field
    assert "create_scenario" not in store.calls


@pytest.mark.asyncio
async def test_duplicate_name_is_a_conflict_naming_the_field(client: Client) -> None:
    r = await client.post("/api/v1/scenarios", headers=auth(OPERATOR), json=VALID)
    assert r.status == 201
    r = await client.post("/api/v1/scenarios", headers=auth(OPERATOR), json=VALID)
    assert r.status == 409
    assert (await r.json())["field"] == "name"


@pytest.mark.asyncio
async def test_unknown_scenario_is_404(client: Client) -> None:
    r = await client.get("/api/v1/scenarios/absent", headers=auth(OPERATOR))
    assert r.status == 404
    assert "absent" in (await r.json())["error"]
