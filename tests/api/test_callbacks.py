"""Voice carrier callbacks and e-mail acknowledgement links: no token, the reference is the
key; recorded in the store before answering, then handed to the sinks."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from nodes.carriers.base import Receipt
from nodes.metrics import Metrics
from replication.store_api import Channel, Outcome
from tests.api.conftest import OPERATOR, Client, Sinks, auth, make_app, seed
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit


async def sent(client: Client, store: MemoryStore, channel: Channel, step: int) -> list[str]:
    """Launch 'alerte' to 'crise' and record one sent attempt per recipient on ``channel``;
    returns their references."""
    await seed(client, contacts=2)
    r = await client.post("/api/v1/campaigns", headers=auth(OPERATOR),
                          json={"scenario": "alerte", "group": "crise"})
    campaign = (await r.json())["id"]
    batch = await store.claim_batch("paris-node1", 30)
    assert batch is not None
    refs = [f"{campaign}:{p.id}:{channel}:{step}.0" for p in batch.recipients]
    await store.record_outcomes(batch.id, batch.epoch, batch.node, [
        Outcome(recipient_id=p.id, channel=channel, carrier="carrier", reference=ref,
                state="sent", step=step, attempt=0, final=False, site="paris")
        for p, ref in zip(batch.recipients, refs, strict=True)])
    return refs


async def voice(client: Client, body: dict[str, Any]) -> tuple[int, Any]:
    r = await client.post("/api/v1/callbacks/voice", json=body)  # no token
    return r.status, await r.json()


@pytest.mark.asyncio
async def test_answered_call_with_dtmf_1_is_delivered_and_acknowledged(
    client: Client, store: MemoryStore, sinks: Sinks,
) -> None:
    refs = await sent(client, store, "voice", 0)
    status, body = await voice(client, {"reference": refs[0], "call_id": "call-77",
                                        "status": "answered", "dtmf": "1"})
    assert status == 200, body
    assert body == {"reference": refs[0], "receipt": "delivered", "acknowledged": True}
    assert store.receipts == [(refs[0], "delivered", "call-77")]
    assert store.acknowledgements == [(refs[0], "dtmf")]
    assert [(x.reference, x.state, x.carrier_message_id) for x in sinks.receipts] == [
        (refs[0], "delivered", "call-77")]
    assert [(a.reference, a.via) for a in sinks.acks] == [(refs[0], "dtmf")]
    campaign = refs[0].split(":")[0]
    r = await client.get(f"/api/v1/campaigns/{campaign}", headers=auth(OPERATOR))
    assert (await r.json())["acknowledged"] == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "dtmf", "receipt"), [
    ("answered", None, "delivered"),
    ("answered", "2", "delivered"),
    ("busy", "1", "failed"),  # no acknowledgement from a call nobody answered
    ("no-answer", None, "failed"),
])
async def test_call_status_without_acknowledgement(
    client: Client, store: MemoryStore, sinks: Sinks, status: str, dtmf: str | None,
    receipt: str,
) -> None:
    refs = await sent(client, store, "voice", 0)
    code, body = await voice(client, {"reference": refs[1], "call_id": None, "status": status,
                                      "dtmf": dtmf})
    assert code == 200, body
    assert (body["receipt"], body["acknowledged"]) == (receipt, False)
    assert store.acknowledgements == [] and sinks.acks == []
    assert [x.state for x in sinks.receipts] == [receipt]


@pytest.mark.asyncio
@pytest.mark.parametrize("reference", [
    "999:1:voice:0.0",  # no such campaign
    "1:1:sms:0.0",  # not a voice reference
    "garbage",
    "1:1:voice",
])
async def test_unknown_reference_is_404_and_nothing_is_recorded(
    client: Client, store: MemoryStore, sinks: Sinks, reference: str,
) -> None:
    await sent(client, store, "voice", 0)
    status, body = await voice(client, {"reference": reference, "status": "answered",
                                        "dtmf": "1"})
    assert status == 404
    assert body["field"] == "reference"
    assert store.receipts == [] and store.acknowledgements == []
    assert sinks.receipts == [] and sinks.acks == []


@pytest.mark.asyncio
async def test_acknowledgement_of_an_attempt_not_recorded_yet_is_404_but_kept(
    client: Client, store: MemoryStore, sinks: Sinks,
) -> None:
    refs = await sent(client, store, "voice", 0)
    early = refs[0].replace(":0.0", ":0.1")  # the next attempt, not written yet
    status, _ = await voice(client, {"reference": early, "status": "answered", "dtmf": "1"})
    assert status == 404
    assert store.acknowledgements == [(early, "dtmf")]  # the store keeps it for later
    assert [a.reference for a in sinks.acks] == [early]  # a waiting dispatcher is told


@pytest.mark.asyncio
@pytest.mark.parametrize(("body", "field"), [
    ({"reference": "1:1:voice:0.0", "status": "exploded"}, "status"),
    ({"reference": "1:1:voice:0.0"}, "status"),
    ({"status": "answered"}, "reference"),
    ({"reference": "1:1:voice:0.0", "status": "answered", "dtmf": 1}, "dtmf"),
    ({"reference": "1:1:voice:0.0", "status": "answered", "extra": True}, "extra"),
])
async def test_malformed_voice_callback_is_422(
    client: Client, store: MemoryStore, body: dict[str, Any], field: str,
) -> None:
    status, answer = await voice(client, body)
    assert status == 422, answer
    assert answer["field"] == field
    assert store.calls == []


class BrokenSinks(Sinks):
    async def on_receipt(self, receipt: Receipt) -> None:
        raise RuntimeError("dispatcher gone")


@pytest.mark.asyncio
async def test_failing_sink_does_not_fail_the_recorded_callback(metrics: Metrics) -> None:
    store = MemoryStore()
    app = make_app(store, metrics, BrokenSinks())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        refs = await sent(client, store, "voice", 0)
        status, _ = await voice(client, {"reference": refs[0], "status": "answered"})
    assert status == 200
    assert store.receipts == [(refs[0], "delivered", None)]


@pytest.mark.asyncio
async def test_email_link_acknowledges_with_a_merci_page(
    client: Client, store: MemoryStore, sinks: Sinks,
) -> None:
    refs = await sent(client, store, "email", 2)
    r = await client.get(f"/api/v1/ack/{refs[0]}")
    assert r.status == 200
    assert r.content_type == "text/html"
    assert "Merci" in await r.text()
    assert r.headers["Cache-Control"] == "no-store"
    assert store.acknowledgements == [(refs[0], "link")]
    assert [(a.reference, a.via) for a in sinks.acks] == [(refs[0], "link")]
    r = await client.get(f"/api/v1/ack/{refs[0]}")  # clicked twice: still thanked
    assert r.status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("reference", ["999:1:email:2.0", "1:1:voice:0.0", "nonsense",
                                       "1:999:email:2.0"])
async def test_unknown_email_link_is_a_404_page(
    client: Client, store: MemoryStore, reference: str,
) -> None:
    await sent(client, store, "email", 2)
    r = await client.get(f"/api/v1/ack/{reference}")
    assert r.status == 404
    assert r.content_type == "text/html"
    assert "inconnu" in await r.text()
