"""The evidence routes: an auditor reads the ledger, checkpoints, proofs, bundles and reports,
and can neither launch nor change anything (every non-GET route of the API refuses it); a drill
record goes in through the same route a drill runner uses, signed with the site key."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from failover.evidence import bundle as bundle_mod
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
