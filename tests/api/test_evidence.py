"""The evidence routes: an auditor reads the ledger, checkpoints, proofs, bundles and reports,
and can neither launch nor change anything (every non-GET route of the API refuses it); a drill
record goes in through the same route a drill runner uses, signed with the site key."""

from __future__ import annotations

import asyncio
import base64
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from failover.evidence import bundle as bundle_mod
from failover.evidence import merkle
from failover.evidence import service as service_mod
from failover.evidence.records import decode_payload
from failover.evidence.service import EvidenceService
from failover.evidence.verify import verify_bundle
from nodes.api.app import ROUTES
from nodes.metrics import Metrics
from tests.api.conftest import AUDITOR, ONCALL, OPERATOR, Client, auth, make_app
from tests.evidence_kit import ORIGIN, Kit, make_kit, synthetic_drill
from tests.fakes.memory_store import MemoryStore

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def ev_client(tmp_path: Path) -> AsyncIterator[tuple[Client, MemoryStore, Kit]]:
    store = MemoryStore()
    kit = make_kit(store.ledger, tmp_path)
    await kit.checkpointer.announce_key()
    svc = EvidenceService(store.ledger, ORIGIN, "paris-node1", "paris", kit.paris, kit.vkeys)
    app = make_app(store, Metrics(), evidence_service=svc)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c, store, kit


def _concrete(path: str) -> str:
    return re.sub(r"\{[^:}]+(:[^/]*)?\}", "1", path)  # {id} and {id:\d{1,18}}


async def test_the_auditor_can_change_nothing_through_any_route(
        ev_client: tuple[Client, MemoryStore, Kit]) -> None:
    client, store, _ = ev_client
    writes = [r for r in ROUTES if r.method not in ("GET", "HEAD") and r.access != "public"]
    assert len(writes) >= 10  # campaigns, contacts, scenarios, events, evidence records...
    before = (len(store.ledger.items), len(store.events))
    for route in writes:
        resp = await client.request(route.method, _concrete(route.path), json={},
                                    headers=auth(AUDITOR))
        assert resp.status == 403, (route.method, route.path, resp.status)
        assert "(role auditor) may not" in (await resp.json())["error"]
    assert (len(store.ledger.items), len(store.events)) == before


async def test_the_auditor_reads_the_evidence(
        ev_client: tuple[Client, MemoryStore, Kit]) -> None:
    client, store, kit = ev_client
    resp = await client.post("/api/v1/evidence/records", json=synthetic_drill(),
                             headers=auth(OPERATOR))
    assert resp.status == 201, await resp.text()
    seq = (await resp.json())["seq"]
    assert store.ledger.items[seq].doc()["actor"] == "alice"  # the operator user who wrote it
    await kit.checkpointer.once()
    for path in ("/api/v1/evidence/entries?start=0&limit=10", "/api/v1/evidence/checkpoints",
                 f"/api/v1/evidence/proofs/inclusion?seq={seq}&size={seq + 1}",
                 f"/api/v1/evidence/proofs/consistency?old=1&new={seq + 1}",
                 "/api/v1/evidence/report?format=html"):
        resp = await client.get(path, headers=auth(AUDITOR))
        assert resp.status == 200, (path, await resp.text())
    resp = await client.get("/api/v1/evidence/bundle", headers=auth(AUDITOR))
    b = bundle_mod.Bundle.from_json(await resp.json())
    result = verify_bundle(b, trusted=kit.vkeys)
    assert result.ok, result.problems
    assert result.records[seq].record["id"] == synthetic_drill()["id"]


async def test_a_bad_record_is_refused_naming_the_field(
        ev_client: tuple[Client, MemoryStore, Kit]) -> None:
    client, store, _ = ev_client
    bad = synthetic_drill()
    bad["findings"][0]["criticality"] = "dramatic"
    size = len(store.ledger.items)
    resp = await client.post("/api/v1/evidence/records", json=bad, headers=auth(OPERATOR))
    assert resp.status == 422
    assert (await resp.json())["field"] == "findings[0].criticality"
    resp = await client.post("/api/v1/evidence/records", json=synthetic_drill(),
                             headers=auth(ONCALL))
    assert resp.status == 403
    assert len(store.ledger.items) == size
    resp = await client.get("/api/v1/evidence/report?format=doc", headers=auth(AUDITOR))
    assert resp.status == 422 and (await resp.json())["field"] == "format"


@pytest.mark.parametrize(("query", "field"), [
    ("to=", "to"), ("from=2026-11-20T09:00Z", "from"), ("from=2026-11-20", "from"),
    ("to=2026-11-20T09:00:00", "to"), ("to=2026-02-30T09:00:00Z", "to"),
])
async def test_a_bundle_or_report_period_is_an_rfc3339_time(
        ev_client: tuple[Client, MemoryStore, Kit], query: str, field: str) -> None:
    client, _, _ = ev_client
    for route in ("bundle", "report"):
        resp = await client.get(f"/api/v1/evidence/{route}?{query}", headers=auth(AUDITOR))
        assert resp.status == 422, (route, query)
        assert (await resp.json())["field"] == field
    resp = await client.get("/api/v1/evidence/bundle?from=2026-11-20T09:00:00.5%2B01:00",
                            headers=auth(AUDITOR))
    assert resp.status == 200


async def test_an_empty_integer_parameter_is_refused_not_defaulted(
        ev_client: tuple[Client, MemoryStore, Kit]) -> None:
    client, _, _ = ev_client
    for path, field in (("/api/v1/evidence/entries?start=", "start"),
                        ("/api/v1/contacts?limit=", "limit")):
        resp = await client.get(path, headers=auth(OPERATOR))
        assert resp.status == 422, path
        assert await resp.json() == {"error": "must be an integer", "field": field}


async def _leaves(store: MemoryStore) -> list[bytes]:
    return await store.ledger.leaf_hashes(0, await store.ledger.size())


async def test_proofs_are_for_the_tree_asked_or_refused_naming_the_parameter(
        ev_client: tuple[Client, MemoryStore, Kit]) -> None:
    client, store, _ = ev_client
    for i in range(4):
        await store.ledger.append("test.event", f"event {i}", actor="node:n1", node="n1",
                                  site="paris")
    leaves = await _leaves(store)
    n = len(leaves)
    resp = await client.get(f"/api/v1/evidence/proofs/inclusion?seq=1&size={n - 1}",
                            headers=auth(AUDITOR))
    proof = [base64.b64decode(p) for p in (await resp.json())["proof"]]
    merkle.verify_inclusion(1, n - 1, leaves[1], proof, merkle.root(leaves[:n - 1]))
    resp = await client.get("/api/v1/evidence/proofs/consistency?old=0&new=0",
                            headers=auth(AUDITOR))
    assert resp.status == 200 and (await resp.json())["proof"] == []
    refused = {f"inclusion?seq=0&size={n + 1}": "size",  # was a proof for a smaller tree
               f"inclusion?seq={n - 1}&size={n - 1}": "seq", "inclusion?size=1": "seq",
               "inclusion?seq=0&size=": "size", f"consistency?old=1&new={n + 1}": "new",
               "consistency?old=3&new=2": "old", "consistency?new=2": "old"}
    for query, field in refused.items():
        resp = await client.get(f"/api/v1/evidence/proofs/{query}", headers=auth(AUDITOR))
        assert resp.status == 422, query
        assert (await resp.json())["field"] == field, query


@pytest.mark.parametrize(("change", "field"), [
    ({"id": " "}, "id"),
    ({"scope": {"description": "d", "sites": None}}, "scope.sites"),  # was a 500
    ({"steps": [{"name": "s", "started_at": "2026-11-20T09:00Z",
                 "ended_at": "2026-11-20T09:01:00Z"}]}, "steps[0].started_at"),
    ({"measured": {"rto_s": 2**53, "rpo_s": 0}}, "measured.rto_s"),
    ({"notes": {"runs": [1, -(2**60)]}}, "notes.runs[1]"),  # beyond what JSON readers hold
    ({"campaigns_in_flight": [0]}, "campaigns_in_flight"),
])
async def test_a_record_the_document_refuses_is_refused_naming_the_field(
        ev_client: tuple[Client, MemoryStore, Kit], change: dict[str, Any], field: str) -> None:
    client, store, _ = ev_client
    size = len(store.ledger.items)
    resp = await client.post("/api/v1/evidence/records", json={**synthetic_drill(), **change},
                             headers=auth(OPERATOR))
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["field"] == field
    assert len(store.ledger.items) == size


async def test_a_campaign_id_written_as_a_float_is_signed_as_an_integer(
        ev_client: tuple[Client, MemoryStore, Kit]) -> None:
    client, store, _ = ev_client
    resp = await client.post("/api/v1/evidence/records", headers=auth(OPERATOR),
                             json={**synthetic_drill(), "campaigns_in_flight": [7.0, 8]})
    assert resp.status == 201, await resp.text()
    envelope = store.ledger.items[(await resp.json())["seq"]].doc()["details"]["envelope"]
    signed = decode_payload(envelope)["predicate"]["campaigns_in_flight"]
    assert signed == [7, 8] and all(type(c) is int for c in signed)


async def test_a_report_renders_off_the_event_loop(
        ev_client: tuple[Client, MemoryStore, Kit], monkeypatch: pytest.MonkeyPatch) -> None:
    """While a (long) report renders, the node still answers: the render runs in a thread."""
    client, _, _ = ev_client
    started, release = threading.Event(), threading.Event()
    released: list[bool] = []

    def slow_render(report: dict[str, Any], fmt: str) -> bytes:
        started.set()
        released.append(release.wait(10))  # on the event loop, nothing could release it
        return b"%PDF-"

    monkeypatch.setattr(service_mod, "render", slow_render)
    task = asyncio.create_task(client.get("/api/v1/evidence/report?format=pdf",
                                          headers=auth(AUDITOR)))
    assert await asyncio.to_thread(started.wait, 10)
    assert (await client.get("/healthz")).status == 200
    release.set()
    resp = await task
    assert resp.status == 200 and resp.content_type == "application/pdf"
    assert released == [True]
