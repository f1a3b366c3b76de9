"""Probes, the Prometheus endpoint and the OpenAPI document."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cluster.coordination.base import MemberInfo
from nodes.api.limits import HttpLimits
from nodes.api.spec import ALLOWED, ROLES
from nodes.membership import MembershipGate
from nodes.metrics import Metrics
from tests.api.conftest import OPERATOR, Client, auth, make_app, seed
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit

SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*'
    r'(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})?'
    r' (?:[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|Inf)|NaN)$'
)


@pytest.mark.asyncio
async def test_healthz_and_readyz(client: Client, store: MemoryStore) -> None:
    r = await client.get("/healthz")
    assert (r.status, (await r.json())["status"]) == (200, "alive")
    r = await client.get("/readyz")
    assert (r.status, await r.json()) == (200, {"status": "ready", "node": "paris-node1",
                                                "site": "paris", "dispatching": True})
    store.unavailable = True
    r = await client.get("/readyz")
    assert r.status == 503
    assert (await r.json())["status"] == "unready"
    r = await client.get("/healthz")  # alive all the same
    assert r.status == 200


@pytest.mark.asyncio
async def test_readyz_says_whether_the_node_may_send(store: MemoryStore,
                                                     metrics: Metrics) -> None:
    """Ready (the store answers) but not dispatching while the membership is in doubt: what a
    frozen node woken past its ttl, or one whose site just booted again, looks like before it
    renews. Deployments and the lab wait for ``dispatching``."""
    server = FakeCoordinationServer()
    coordinator = FakeCoordinator(server, "paris-node1", ttl=6.0)
    await coordinator.join(MemberInfo("paris-node1", "paris", "10.0.0.1"))
    app = make_app(store, metrics, dispatch=MembershipGate(coordinator, 2.0, "paris-node1",
                                                           "paris"))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        async def state() -> tuple[int, object]:
            r = await client.get("/readyz")
            return r.status, (await r.json())["dispatching"]

        assert await state() == (200, True)
        server.advance(4.5)  # past ttl - safety without a renewal
        assert await state() == (200, False)
        await coordinator.join(MemberInfo("paris-node1", "paris", "10.0.0.1"))
        assert await state() == (200, True)


@pytest.mark.asyncio
async def test_unreachable_store_is_503_on_api_routes(client: Client, store: MemoryStore) -> None:
    store.unavailable = True
    r = await client.get("/api/v1/contacts", headers=auth(OPERATOR))
    assert r.status == 503
    assert r.headers["Retry-After"] == "1"
    assert "error" in await r.json()


@pytest.mark.asyncio
async def test_metrics_text_parses_and_counts_requests(client: Client, store: MemoryStore) -> None:
    await seed(client, contacts=1)
    await client.get("/api/v1/contacts", headers=auth(OPERATOR))
    await client.get("/api/v1/contacts")
    await client.get('/api/v1/scenarios/we"ird\\name', headers=auth(OPERATOR))
    r = await client.get("/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await r.text()
    assert text.endswith("\n")
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split(" ", 3)
            assert parts[1] in ("HELP", "TYPE"), line
            if parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        assert SAMPLE.match(line), line
        assert line.split("{")[0].split(" ")[0] in types, line
    assert ('tenir_http_requests_total{method="GET",route="/api/v1/contacts",status="200"} 1'
            in text)
    assert ('tenir_http_requests_total{method="GET",route="/api/v1/contacts",status="401"} 1'
            in text)
    assert 'route="/api/v1/scenarios/{name}",status="404"' in text  # templates, not paths
    assert types["tenir_fencing_rejections_total"] == "counter"
    assert types["tenir_messages_sent_total"] == "counter"
    assert "tenir_store_up 1" in text
    store.unavailable = True
    assert "tenir_store_up 0" in await (await client.get("/metrics")).text()


def resolve(document: dict[str, Any], node: Any) -> list[str]:
    """Every $ref under ``node`` that does not resolve in ``document``."""
    missing: list[str] = []
    if isinstance(node, dict):
        target = node.get("$ref")
        if isinstance(target, str):
            schemas = document["components"]["schemas"]
            if target.removeprefix("#/components/schemas/") not in schemas:
                missing.append(target)
        for value in node.values():
            missing += resolve(document, value)
    elif isinstance(node, list):
        for value in node:
            missing += resolve(document, value)
    return missing


@pytest.mark.asyncio
async def test_openapi_describes_every_registered_route_truthfully(client: Client) -> None:
    r = await client.get("/api/v1/openapi.json")
    document = await r.json()
    assert document["openapi"].startswith("3.1")
    app = client.app
    assert app is not None
    registered = set()
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        registered.add((route.method.lower(), resource.canonical))
    described = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert registered == described
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op["operationId"] and op["summary"], where
            assert op["responses"], where
            assert any(s.startswith("2") for s in op["responses"]), where
            for name in re.findall(r"\{(\w+)\}", path):
                assert any(p["name"] == name and p["in"] == "path"
                           for p in op.get("parameters", [])), where
            if op["security"]:
                assert {"401"} <= set(op["responses"]), where
                assert set(op["x-roles"]) <= set(ROLES)
            if method == "post" and "requestBody" in op:
                assert {"413", "415", "422"} <= set(op["responses"]), where
    ops = document["paths"]
    assert ops["/api/v1/campaigns"]["post"]["x-roles"] == ["operator"]
    assert ops["/api/v1/campaigns/{id}/pause"]["post"]["x-roles"] == sorted(
        ALLOWED["control"], key=ROLES.index)
    assert ops["/api/v1/callbacks/voice"]["post"]["security"] == []
    assert "403" in ops["/api/v1/contacts/import"]["post"]["responses"]
    assert "text/csv" in ops["/api/v1/contacts/import"]["post"]["requestBody"]["content"]
    assert resolve(document, document) == []


@pytest.mark.asyncio
async def test_openapi_security_matches_what_the_server_enforces(store: MemoryStore,
                                                                 metrics: Metrics) -> None:
    """Every route the document calls public answers without a token (not 401), and every
    other one refuses a request without a token. One 401 per route: more than the default
    burst of failed authentications from one address (30), past which every route answers
    429 (tests/api/test_auth.py), hence a larger burst here."""
    app = make_app(store, metrics, limits=HttpLimits(failure_burst=1000))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        document = await (await client.get("/api/v1/openapi.json")).json()
        secured = [op for ops in document["paths"].values() for op in ops.values()
                   if op["security"]]
        assert len(secured) > HttpLimits().failure_burst  # why the burst is raised
        for path, ops in document["paths"].items():
            concrete = path.replace("{id}", "1").replace("{name}", "x").replace(
                "{reference}", "1:1:email:0.0").replace("{run_id}", "x").replace(
                "{finding}", "F1")
            for method, op in ops.items():
                r = await client.request(method.upper(), concrete)
                if op["security"]:
                    assert r.status == 401, f"{method} {path}"
                else:
                    assert r.status != 401, f"{method} {path}"
