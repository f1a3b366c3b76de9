"""Bearer tokens and roles: 401 without or with an unknown token, 403 for a role that may not."""

from __future__ import annotations

import pytest

from nodes.api import create_app
from nodes.api.auth import TokenTable, bearer_token
from nodes.metrics import Metrics
from tests.api.conftest import AUDITOR, ONCALL, OPERATOR, Client, auth, seed
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit


@pytest.mark.asyncio
async def test_missing_token_is_401_with_a_bearer_challenge(client: Client) -> None:
    r = await client.get("/api/v1/contacts")
    assert r.status == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await r.json())["error"] == "missing bearer token"


@pytest.mark.asyncio
@pytest.mark.parametrize("header", [
    "Bearer not-a-known-token-at-all",
    "Bearer " + OPERATOR + "x",
    "Bearer " + OPERATOR[:-1],
    "Basic " + OPERATOR,
    OPERATOR,
    "Bearer ",
])
async def test_unknown_or_malformed_token_is_401(client: Client, header: str) -> None:
    r = await client.get("/api/v1/contacts", headers={"Authorization": header})
    assert r.status == 401
    assert "error" in await r.json()


@pytest.mark.asyncio
async def test_scheme_is_case_insensitive(client: Client) -> None:
    r = await client.get("/api/v1/contacts", headers={"Authorization": f"bearer {AUDITOR}"})
    assert r.status == 200


@pytest.mark.asyncio
async def test_auditor_reads_but_cannot_write_launch_or_control(client: Client) -> None:
    await seed(client)
    for path in ("/api/v1/contacts", "/api/v1/groups", "/api/v1/scenarios",
                 "/api/v1/scenarios/alerte", "/api/v1/campaigns"):
        r = await client.get(path, headers=auth(AUDITOR))
        assert r.status == 200, path
    r = await client.post("/api/v1/campaigns", headers=auth(AUDITOR),
                          json={"scenario": "alerte", "group": "crise"})
    assert r.status == 403
    assert "auditor" in (await r.json())["error"]
    r = await client.post("/api/v1/contacts", headers=auth(AUDITOR), json={"name": "x"})
    assert r.status == 403
    r = await client.post("/api/v1/groups", headers=auth(AUDITOR), json={"name": "x"})
    assert r.status == 403
    r = await client.post("/api/v1/campaigns", headers=auth(OPERATOR),
                          json={"scenario": "alerte", "group": "crise"})
    campaign = (await r.json())["id"]
    for action in ("pause", "resume", "cancel"):
        r = await client.post(f"/api/v1/campaigns/{campaign}/{action}", headers=auth(AUDITOR))
        assert r.status == 403, action


@pytest.mark.asyncio
async def test_oncall_pauses_resumes_and_cancels_but_cannot_launch_or_import(
    client: Client, store: MemoryStore,
) -> None:
    await seed(client)
    r = await client.post("/api/v1/campaigns", headers=auth(ONCALL),
                          json={"scenario": "alerte", "group": "crise"})
    assert r.status == 403
    assert "launch_campaign" not in store.calls
    r = await client.post("/api/v1/contacts/import", headers={
        **auth(ONCALL), "Content-Type": "text/csv"}, data="name,mobile\nA,0612345678\n")
    assert r.status == 403
    r = await client.post("/api/v1/scenarios", headers=auth(ONCALL), json={"name": "x"})
    assert r.status == 403
    r = await client.post("/api/v1/campaigns", headers=auth(OPERATOR),
                          json={"scenario": "alerte", "group": "crise"})
    campaign = (await r.json())["id"]
    for action, state in (("pause", "paused"), ("resume", "running"), ("cancel", "cancelled")):
        r = await client.post(f"/api/v1/campaigns/{campaign}/{action}", headers=auth(ONCALL))
        assert r.status == 200, action
        assert (await r.json())["state"] == state
    r = await client.get(f"/api/v1/campaigns/{campaign}", headers=auth(ONCALL))
    assert r.status == 200


@pytest.mark.asyncio
async def test_refusals_are_checked_before_the_body_is_read(
    client: Client, store: MemoryStore,
) -> None:
    r = await client.post("/api/v1/contacts", data=b"not json at all",
                          headers={"Content-Type": "application/json"})
    assert r.status == 401
    r = await client.post("/api/v1/contacts", data=b"not json at all",
                          headers={**auth(AUDITOR), "Content-Type": "application/json"})
    assert r.status == 403
    assert store.calls == []


@pytest.mark.asyncio
async def test_public_routes_need_no_token(client: Client) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"):
        r = await client.get(path)
        assert r.status == 200, path


@pytest.mark.asyncio
async def test_unknown_route_and_method_are_json_errors(client: Client) -> None:
    r = await client.get("/api/v1/nothing-here", headers=auth(OPERATOR))
    assert r.status == 404
    assert "error" in await r.json()
    r = await client.delete("/api/v1/contacts", headers=auth(OPERATOR))
    assert r.status == 405
    assert "GET" in r.headers["Allow"]
    assert "error" in await r.json()


@pytest.mark.asyncio
async def test_auth_failures_are_counted(client: Client, metrics: Metrics) -> None:
    await client.get("/api/v1/contacts")
    await client.get("/api/v1/contacts", headers=auth("unknown-token-0000000000"))
    await client.post("/api/v1/groups", headers=auth(AUDITOR), json={"name": "g"})
    assert metrics.auth_failures.value(reason="missing") == 1
    assert metrics.auth_failures.value(reason="unknown") == 1
    assert metrics.auth_failures.value(reason="forbidden") == 1


def test_token_table_refuses_weak_tokens_and_unknown_roles() -> None:
    with pytest.raises(ValueError, match="shorter"):
        create_app(MemoryStore(), node="n", site="s", tokens={"short": "operator"},
                   metrics=Metrics())
    with pytest.raises(ValueError, match="unknown role"):
        TokenTable({"a-long-enough-token-123": "admin"})  # type: ignore[dict-item]


def test_token_table_knows_only_exact_tokens() -> None:
    table = TokenTable({"a-long-enough-token-123": "operator",
                        "another-long-token-456": "auditor"})
    who = table.lookup("a-long-enough-token-123")
    assert who is not None and who.role == "operator"
    assert "a-long-enough-token-123" not in who.id
    assert table.lookup("a-long-enough-token-12") is None
    assert table.lookup("") is None
    assert table.lookup("a-long-enough-token-123\u00e9") is None
    assert bearer_token("Bearer   tok  ") == "tok"
    assert bearer_token("Token tok") is None
    assert bearer_token(None) is None
