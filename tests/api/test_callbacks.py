"""The voice carrier's callbacks: signed by the carrier over body and time, at a URL this node
signed for the reference; recorded only when the store knows the attempt or this node's
dispatcher waits on it; every refusal stores nothing, is counted by reason and charges guesses
to the caller's failure rate limit."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from nodes.api.limits import HttpLimits
from nodes.carriers.base import Receipt
from nodes.carriers.callback_auth import HEADER, sign_callback
from nodes.metrics import Metrics
from nodes.signing import AckKey, AckSigner, parse_reference
from replication.store_api import Channel, Outcome
from tests.api.conftest import (
    CARRIER_SECRET,
    OPERATOR,
    SIGNER,
    Client,
    Sinks,
    Waiting,
    auth,
    make_app,
    seed,
)
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit


async def launch(client: Client, store: MemoryStore) -> tuple[int, list[int]]:
    """Launch 'alerte' to 'crise' (two contacts) and claim its batch: (campaign, recipients)."""
    await seed(client, contacts=2)
    r = await client.post("/api/v1/campaigns", headers=auth(OPERATOR),
                          json={"scenario": "alerte", "group": "crise"})
    campaign = (await r.json())["id"]
    batch = await store.claim_batch("paris-node1", 30)
    assert batch is not None
    return campaign, [p.id for p in batch.recipients]


async def sent(client: Client, store: MemoryStore, channel: Channel, step: int) -> list[str]:
    """Launch and record one sent attempt per recipient on ``channel``; their references."""
    campaign, recipients = await launch(client, store)
    [batch] = store._batches.values()  # the one launch() claimed
    refs = [f"{campaign}:{p}:{channel}:{step}.0" for p in recipients]
    await store.record_outcomes(batch.id, batch.epoch, "paris-node1", [
        Outcome(recipient_id=p, channel=channel, carrier="carrier", reference=ref,
                state="sent", step=step, attempt=0, final=False, site="paris")
        for p, ref in zip(recipients, refs, strict=True)])
    return refs


async def voice(client: Client, body: dict[str, Any], *, sig: str | None = "auto",
                carrier: str | None = CARRIER_SECRET, at: float | None = None,
                raw: bytes | None = None) -> tuple[int, Any]:
    """POST a callback as the carrier would: body signed with ``carrier`` at ``at``, to the URL
    signed for the body's reference (``sig="auto"``), another ``sig``, or none."""
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if carrier is not None:
        headers[HEADER] = sign_callback(carrier, data, at)
    if sig == "auto":
        reference = str(body.get("reference"))
        sig = SIGNER.sign("voice", reference) if parse_reference(reference) else "k2.none"
    r = await client.post("/api/v1/callbacks/voice", data=data, headers=headers,
                          params={"sig": sig} if sig is not None else None)  # no token
    return r.status, await r.json()


def answered(reference: str, dtmf: str | None = "1") -> dict[str, Any]:
    return {"reference": reference, "call_id": "call-77", "status": "answered", "dtmf": dtmf}


@pytest.mark.asyncio
async def test_answered_call_with_dtmf_1_is_delivered_and_acknowledged(
    client: Client, store: MemoryStore, sinks: Sinks, metrics: Metrics,
) -> None:
    refs = await sent(client, store, "voice", 0)
    status, body = await voice(client, answered(refs[0]))
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
    assert metrics.callbacks.value(kind="voice", result="acknowledged") == 1


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
async def test_a_callback_for_an_attempt_in_flight_here_is_kept_until_it_is_recorded(
    store: MemoryStore, metrics: Metrics, sinks: Sinks,
) -> None:
    waiting = Waiting()
    app = make_app(store, metrics, sinks, in_flight=waiting)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        campaign, recipients = await launch(client, store)
        ref = f"{campaign}:{recipients[0]}:voice:0.0"
        waiting.references.add(ref)  # sent, its outcome not written yet
        status, body = await voice(client, answered(ref))
    assert status == 200, body
    assert store.acknowledgements == [(ref, "dtmf")]
    assert [a.reference for a in sinks.acks] == [ref]


REFUSALS = [
    # (how the callback is made, status, reason)
    ("carrier_unsigned", 401, "carrier_unsigned"),
    ("carrier_wrong_secret", 401, "carrier_bad_signature"),
    ("carrier_stale", 401, "stale"),
    ("url_unsigned", 403, "unsigned"),
    ("url_signed_for_another_recipient", 403, "bad_signature"),
    ("url_signed_as_a_link", 403, "bad_signature"),
    ("url_signed_with_an_unknown_key", 403, "unknown_key"),
    ("guessed_reference", 404, "malformed"),
    ("no_such_recipient", 404, "unknown"),
    ("early", 409, "early"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("how", "status", "reason"), REFUSALS)
async def test_forged_stale_and_early_callbacks_are_refused_counted_and_not_stored(
    client: Client, store: MemoryStore, sinks: Sinks, metrics: Metrics, how: str,
    status: int, reason: str,
) -> None:
    refs = await sent(client, store, "voice", 0)
    ref, other = refs
    kwargs: dict[str, Any] = {}
    body = answered(ref)
    if how == "carrier_unsigned":
        kwargs["carrier"] = None
    elif how == "carrier_wrong_secret":
        kwargs["carrier"] = "another-carrier-secret-0123456789abcdef"
    elif how == "carrier_stale":
        kwargs["at"] = time.time() - 3600
    elif how == "url_unsigned":
        kwargs["sig"] = None
    elif how == "url_signed_for_another_recipient":
        kwargs["sig"] = SIGNER.sign("voice", other)
    elif how == "url_signed_as_a_link":
        kwargs["sig"] = SIGNER.sign("link", ref)
    elif how == "url_signed_with_an_unknown_key":
        kwargs["sig"] = AckSigner([AckKey("k9", "x" * 40)]).sign("voice", ref)
    elif how == "guessed_reference":
        body = answered("1:1:voice")
    elif how == "no_such_recipient":
        body = answered(ref.replace(f":{ref.split(':')[1]}:", ":999:"))
    elif how == "early":
        body = answered(ref.replace(":0.0", ":0.1"))  # the next attempt, neither made nor sent
    code, answer = await voice(client, body, **kwargs)
    assert (code, answer["reason"]) == (status, reason), answer
    assert store.receipts == [] and store.acknowledgements == []
    assert sinks.receipts == [] and sinks.acks == []
    assert metrics.callbacks_refused.value(kind="voice", reason=reason) == 1


@pytest.mark.asyncio
async def test_a_replayed_callback_is_refused_and_an_ack_after_the_final_outcome_too(
    client: Client, store: MemoryStore, metrics: Metrics,
) -> None:
    refs = await sent(client, store, "voice", 0)
    data = json.dumps(answered(refs[0])).encode()
    assert (await voice(client, {}, raw=data, sig=SIGNER.sign("voice", refs[0])))[0] == 200
    status, body = await voice(client, {}, raw=data, sig=SIGNER.sign("voice", refs[0]))
    assert (status, body["reason"]) == (409, "replayed")
    # signed anew (a second genuine callback, or one re-signed by a stolen carrier secret):
    status, body = await voice(client, answered(refs[0]), at=time.time() + 1)
    assert (status, body["reason"]) == (409, "final")
    assert store.acknowledgements == [(refs[0], "dtmf")]
    assert store.receipts == [(refs[0], "delivered", "call-77")]
    assert metrics.callbacks_refused.value(kind="voice", reason="final") == 1


@pytest.mark.asyncio
async def test_junk_callbacks_add_no_receipt_row(store: MemoryStore, metrics: Metrics) -> None:
    app = make_app(store, metrics, limits=HttpLimits(failure_burst=1000))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        refs = await sent(client, store, "voice", 0)
        campaign = refs[0].split(":")[0]
        for n in range(200):  # well signed by the carrier, for references nobody sent
            junk = {"reference": f"{campaign}:{n}:voice:0.{n}", "status": "busy"}
            assert (await voice(client, junk, sig=None))[0] == 403
            assert (await voice(client, junk, at=time.time() + 1))[0] == 404
        receipt = {"reference": refs[0], "call_id": "c1", "status": "no-answer"}
        for n in range(20):  # one real receipt, sent again and again (signed anew each time)
            assert (await voice(client, receipt, at=time.time() + n))[0] == 200
    assert store.receipts == [(refs[0], "failed", "c1")]


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


@pytest.mark.asyncio
async def test_guessing_signatures_is_rate_limited(store: MemoryStore, metrics: Metrics) -> None:
    app = make_app(store, metrics, limits=HttpLimits(failures_per_s=0.01, failure_burst=10))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        codes = [(await voice(client, answered(f"1:{n}:voice:0.0"), sig=f"k2.guess{n}"))[0]
                 for n in range(15)]
    assert codes == [403] * 10 + [429] * 5
    assert metrics.rate_limited.value(limit="failures") == 5


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
async def test_a_public_route_refuses_a_body_over_a_few_kib(
    client: Client, store: MemoryStore,
) -> None:
    body = answered("1:1:voice:0.0") | {"call_id": "c" * 5000}
    status, answer = await voice(client, body)
    assert (status, answer["field"]) == (413, "body")
    status, answer = await voice(client, answered("1:1:voice:0.0") | {"call_id": "c" * 3000})
    assert status != 413  # within the limit: read, then refused for what it says
    assert store.receipts == []
