"""Per-user bearer tokens and roles: 401 without or with an unknown token, 403 for a role that
may not, every action recorded under the user's name, and failed attempts rate limited."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from nodes.api.auth import UserTable, bearer_token
from nodes.api.limits import HttpLimits
from nodes.metrics import Metrics
from nodes.users import ApiUser, token_digest
from tests.api.conftest import AUDITOR, ONCALL, OPERATOR, Client, auth, make_app, seed
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


def test_users_need_strong_tokens_known_roles_and_unique_names() -> None:
    with pytest.raises(ValueError, match="token: at least 16"):
        ApiUser.with_token("alice", "operator", "short")
    with pytest.raises(ValueError, match="role"):
        ApiUser.with_token("alice", "admin", "a-long-enough-token-123")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        ApiUser.with_token("alice smith", "operator", "a-long-enough-token-123")
    with pytest.raises(ValueError, match="token_sha256"):
        ApiUser("alice", "operator", "ABCD")
    one = ApiUser.with_token("alice", "operator", "a-long-enough-token-123")
    with pytest.raises(ValueError, match="same name"):
        UserTable([one, ApiUser.with_token("alice", "auditor", "another-long-token-456")])
    with pytest.raises(ValueError, match="same token"):
        UserTable([one, ApiUser.with_token("bob", "auditor", "a-long-enough-token-123")])
    assert "a-long-enough-token-123" not in repr(one)


def test_user_table_knows_only_exact_tokens() -> None:
    table = UserTable([
        ApiUser.with_token("alice", "operator", "a-long-enough-token-123"),
        ApiUser("bob", "auditor", token_digest("another-long-token-456")),  # digest only
    ])
    who = table.lookup("a-long-enough-token-123")
    assert who is not None and (who.role, who.id) == ("operator", "alice")
    bob = table.lookup("another-long-token-456")
    assert bob is not None and (bob.role, bob.id) == ("auditor", "bob")
    assert table.lookup("a-long-enough-token-12") is None
    assert table.lookup("") is None
    assert table.lookup("a-long-enough-token-123\u00e9") is None
    assert bearer_token("Bearer   tok  ") == "tok"
    assert bearer_token("Token tok") is None
    assert bearer_token(None) is None


@pytest.mark.asyncio
async def test_every_action_records_the_user_who_did_it(
    client: Client, store: MemoryStore,
) -> None:
    await seed(client)
    r = await client.post("/api/v1/campaigns", headers=auth(OPERATOR),
                          json={"scenario": "alerte", "group": "crise"})
    campaign = (await r.json())["id"]
    r = await client.get(f"/api/v1/campaigns/{campaign}", headers=auth(AUDITOR))
    assert (await r.json())["launched_by"] == "alice"
    r = await client.post(f"/api/v1/campaigns/{campaign}/pause", headers=auth(ONCALL))
    assert r.status == 200
    r = await client.post("/api/v1/events", headers=auth(ONCALL),
                          json={"kind": "operator.drill", "sentence": "drill"})
    assert r.status == 201
    by = {(e.kind, e.actor, e.node) for e in store.events}
    assert ("campaign.launch", "alice", "paris-node1") in by
    assert ("campaign.pause", "olivier", "paris-node1") in by
    assert ("operator.drill", "olivier", "paris-node1") in by


@pytest.mark.asyncio
async def test_failed_authentications_are_rate_limited_per_address(
    store: MemoryStore, metrics: Metrics,
) -> None:
    app = make_app(store, metrics, limits=HttpLimits(failures_per_s=0.01, failure_burst=5))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        statuses = []
        for i in range(8):
            r = await client.get("/api/v1/contacts", headers=auth(f"guess-{i:020d}"))
            statuses.append(r.status)
        assert statuses == [401] * 5 + [429] * 3
        assert int(r.headers["Retry-After"]) > 0
        # the right token is refused too while the address is locked out, /healthz is not
        r = await client.get("/api/v1/contacts", headers=auth(OPERATOR))
        assert r.status == 429
        assert (await client.get("/healthz")).status == 200
    assert metrics.rate_limited.value(limit="failures") == 4
    assert metrics.auth_failures.value(reason="unknown") == 5
