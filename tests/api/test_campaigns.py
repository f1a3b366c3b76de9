"""Campaigns: launch from a scenario to a group or a generated population, progress,
pause/resume/cancel, per-recipient outcomes."""

from __future__ import annotations

from typing import Any

import pytest

from nodes.metrics import Metrics
from replication.store_api import AttemptState, Outcome
from tests.api.conftest import AUDITOR, ONCALL, OPERATOR, TOKENS, Client, auth, seed
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit


async def launch(client: Client, body: dict[str, Any]) -> tuple[int, Any]:
    r = await client.post("/api/v1/campaigns", headers=auth(OPERATOR), json=body)
    return r.status, await r.json()


async def progress(client: Client, campaign: int) -> dict[str, Any]:
    r = await client.get(f"/api/v1/campaigns/{campaign}", headers=auth(AUDITOR))
    assert r.status == 200
    body: dict[str, Any] = await r.json()
    return body


@pytest.mark.asyncio
async def test_launch_to_a_group_then_follow_its_progress(
    client: Client, store: MemoryStore, metrics: Metrics,
) -> None:
    await seed(client, contacts=3)
    status, body = await launch(client, {"scenario": "alerte", "group": "crise"})
    assert status == 201, body
    campaign = body["id"]
    p = await progress(client, campaign)
    assert {k: p[k] for k in ("id", "state", "recipients", "delivered", "acknowledged",
                              "failed", "pending", "completed_at", "by_site")} == {
        "id": campaign, "state": "running", "recipients": 3, "delivered": 0,
        "acknowledged": 0, "failed": 0, "pending": 3, "completed_at": None, "by_site": {}}
    assert p["scenario"] == "alerte" and p["started_at"]
    assert p["launched_by"] == "alice"  # the user who launched it
    assert all(token not in p["launched_by"] for token in TOKENS)
    assert metrics.campaigns_launched.value() == 1

    # A dispatcher on marseille delivers to two recipients, the third fails.
    batch = await store.claim_batch("marseille-node1", 30)
    assert batch is not None
    states: tuple[AttemptState, ...] = ("delivered", "delivered", "failed")
    outcomes = [
        Outcome(recipient_id=r.id, channel="sms", carrier="sms-mrs",
                reference=f"{campaign}:{r.id}:sms:1.0", state=state, step=1, attempt=0,
                final=True, site="marseille")
        for r, state in zip(batch.recipients, states, strict=True)
    ]
    await store.record_outcomes(batch.id, batch.epoch, batch.node, outcomes)
    await store.finish_batch(batch.id, batch.epoch, batch.node)
    p = await progress(client, campaign)
    assert (p["state"], p["delivered"], p["failed"], p["pending"]) == ("completed", 2, 1, 0)
    assert p["by_site"] == {"marseille": 2}
    assert p["completed_at"] is not None

    r = await client.get(f"/api/v1/campaigns/{campaign}/recipients?limit=2",
                         headers=auth(AUDITOR))
    page = await r.json()
    assert [o["state"] for o in page["items"]] == ["delivered", "delivered"]
    assert page["items"][0]["channel"] == "sms" and page["items"][0]["site"] == "marseille"
    assert page["next_offset"] == 2
    r = await client.get(f"/api/v1/campaigns/{campaign}/recipients?offset=2",
                         headers=auth(AUDITOR))
    page = await r.json()
    assert [o["state"] for o in page["items"]] == ["failed"]
    assert page["next_offset"] is None


@pytest.mark.asyncio
async def test_launch_to_a_generated_population(client: Client) -> None:
    await seed(client, contacts=0)
    status, body = await launch(client, {"scenario": "alerte", "population": 250,
                                         "batch_size": 50})
    assert status == 201
    assert (await progress(client, body["id"]))["recipients"] == 250
    r = await client.get("/api/v1/campaigns", headers=auth(ONCALL))
    assert [c["id"] for c in (await r.json())["items"]] == [body["id"]]


@pytest.mark.asyncio
@pytest.mark.parametrize(("body", "field", "named"), [
    ({"scenario": "absent", "group": "crise"}, "scenario", "absent"),
    ({"scenario": "alerte", "group": "absent"}, "group", "absent"),
    ({"scenario": "alerte", "group": "vide"}, "group", "vide"),
    ({"scenario": "alerte"}, "group", None),
    ({"scenario": "alerte", "group": "crise", "population": 3}, "group", None),
    ({"scenario": "alerte", "population": 0}, "population", None),
    ({"scenario": "alerte", "population": "10"}, "population", None),
    ({"scenario": "alerte", "group": "crise", "batch_size": 0}, "batch_size", None),
    ({"group": "crise"}, "scenario", None),
    ({"scenario": "alerte", "group": "crise", "when": "now"}, "when", None),
])
async def test_bad_launch_is_refused_naming_the_field(
    client: Client, store: MemoryStore, body: dict[str, Any], field: str, named: str | None,
) -> None:
    await seed(client)
    await client.post("/api/v1/groups", headers=auth(OPERATOR), json={"name": "vide"})
    status, answer = await launch(client, body)
    assert status == 422, answer
    assert answer["field"] == field
    if named:
        assert named in answer["error"]
    assert await store.list_campaigns() == []


@pytest.mark.asyncio
async def test_pause_resume_cancel(client: Client, store: MemoryStore) -> None:
    await seed(client)
    _, body = await launch(client, {"scenario": "alerte", "group": "crise"})
    base = f"/api/v1/campaigns/{body['id']}"
    r = await client.post(f"{base}/pause", headers=auth(ONCALL))
    assert (r.status, (await r.json())["state"]) == (200, "paused")
    r = await client.post(f"{base}/pause", headers=auth(ONCALL))  # again: no change, no error
    assert (r.status, (await r.json())["state"]) == (200, "paused")
    r = await client.post(f"{base}/resume", headers=auth(OPERATOR))
    assert (r.status, (await r.json())["state"]) == (200, "running")
    r = await client.post(f"{base}/cancel", headers=auth(ONCALL))
    cancelled = await r.json()
    assert (r.status, cancelled["state"]) == (200, "cancelled")
    assert cancelled["completed_at"] is not None
    for action in ("pause", "resume"):
        r = await client.post(f"{base}/{action}", headers=auth(ONCALL))
        assert r.status == 409, action
        assert (await r.json())["field"] == "state"
    assert (await progress(client, body["id"]))["state"] == "cancelled"
    # who did what is in the continuity ledger, once per change
    ledger = [(e.kind, e.actor) for e in store.events]
    assert ledger == [("campaign.launch", "alice"), ("campaign.pause", "olivier"),
                      ("campaign.resume", "alice"), ("campaign.cancel", "olivier")]
    assert all(e.campaign_id == body["id"] for e in store.events)


@pytest.mark.asyncio
async def test_campaigns_filtered_by_state_and_a_bad_state_is_named(client: Client) -> None:
    await seed(client)
    ids = [(await launch(client, {"scenario": "alerte", "group": "crise"}))[1]["id"]
           for _ in range(3)]
    await client.post(f"/api/v1/campaigns/{ids[1]}/cancel", headers=auth(ONCALL))
    await client.post(f"/api/v1/campaigns/{ids[2]}/pause", headers=auth(ONCALL))

    async def listed(query: str) -> list[tuple[int, str]]:
        r = await client.get(f"/api/v1/campaigns{query}", headers=auth(OPERATOR))
        assert r.status == 200, await r.text()
        return [(c["id"], c["state"]) for c in (await r.json())["items"]]

    assert await listed("?state=running,paused") == [(ids[2], "paused"), (ids[0], "running")]
    assert await listed("?state=cancelled&limit=1") == [(ids[1], "cancelled")]
    assert len(await listed("")) == 3
    r = await client.get("/api/v1/campaigns?state=running,done", headers=auth(OPERATOR))
    answer = await r.json()
    assert (r.status, answer["field"]) == (422, "state"), answer
    assert "'done' is not one of running, paused" in answer["error"]


@pytest.mark.asyncio
async def test_unknown_campaign_is_404(client: Client) -> None:
    for method, path in (("GET", "/api/v1/campaigns/999"),
                         ("POST", "/api/v1/campaigns/999/pause"),
                         ("GET", "/api/v1/campaigns/999/recipients"),
                         ("GET", "/api/v1/campaigns/abc")):
        r = await client.request(method, path, headers=auth(OPERATOR))
        assert r.status == 404, path
        assert "error" in await r.json()
