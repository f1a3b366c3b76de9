"""``GET /api/v1/cluster`` (any role): shape, partial answers when the coordination service or
the store cannot be read, presence in the OpenAPI document; ``/api/v1/events`` for operators'
evidence."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from cluster.coordination.base import CoordinationUnavailable, MemberInfo
from nodes.metrics import Metrics
from replication.store_api import ChannelStep, ScenarioIn
from tests.api.conftest import AUDITOR, ONCALL, OPERATOR, Client, auth, make_app
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit


class FakeView:
    def __init__(self) -> None:
        self.unavailable = False

    def _check(self) -> None:
        if self.unavailable:
            raise CoordinationUnavailable("etcd get: no answer within 1.5s")

    async def members(self) -> list[MemberInfo]:
        self._check()
        return [MemberInfo("paris-node2", "paris", "10.0.0.2", url="http://10.0.0.2:8080"),
                MemberInfo("marseille-node1", "marseille", "10.0.0.3",
                           url="http://10.0.0.3:8080")]

    async def watchdog_leader(self) -> str | None:
        self._check()
        return "paris-node2"

    async def drained_sites(self) -> list[str]:
        self._check()
        return ["marseille"]


@pytest.fixture
def view() -> FakeView:
    return FakeView()


@pytest_asyncio.fixture
async def cluster_client(store: MemoryStore, metrics: Metrics,
                         view: FakeView) -> AsyncIterator[Client]:
    app = make_app(store, metrics, cluster_view=view)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


async def _claim(store: MemoryStore) -> int:
    await store.create_scenario(ScenarioIn("s", (ChannelStep("sms", {"fr": "x"}),)))
    campaign = await store.launch_campaign("s", "op", population=50, batch_size=10)
    for node in ("paris-node2", "paris-node2", "marseille-node1"):
        assert await store.claim_batch(node, 30) is not None
    return campaign


@pytest.mark.asyncio
@pytest.mark.parametrize("token", [OPERATOR, ONCALL, AUDITOR])
async def test_every_role_reads_the_cluster_view(cluster_client: Client, store: MemoryStore,
                                                 token: str) -> None:
    campaign = await _claim(store)
    r = await cluster_client.get("/api/v1/cluster", headers=auth(token))
    assert r.status == 200, await r.text()
    assert await r.json() == {
        "node": "paris-node1", "site": "paris",
        "members": [{"name": "marseille-node1", "site": "marseille",
                     "url": "http://10.0.0.3:8080", "carriers": []},
                    {"name": "paris-node2", "site": "paris", "url": "http://10.0.0.2:8080",
                     "carriers": []}],
        "watchdog_leader": "paris-node2",
        "drained_sites": ["marseille"],
        "in_flight": {str(campaign): {"marseille-node1": 1, "paris-node2": 2}},
        "errors": [],
    }


@pytest.mark.asyncio
async def test_cluster_view_needs_a_token_and_knows_no_query(cluster_client: Client) -> None:
    assert (await cluster_client.get("/api/v1/cluster")).status == 401
    r = await cluster_client.get("/api/v1/cluster?verbose=1", headers=auth(AUDITOR))
    assert (r.status, (await r.json())["field"]) == (422, "verbose")


@pytest.mark.asyncio
async def test_unreachable_coordination_gives_nulls_and_says_why(
        cluster_client: Client, store: MemoryStore, view: FakeView) -> None:
    await _claim(store)
    view.unavailable = True
    body = await (await cluster_client.get("/api/v1/cluster", headers=auth(AUDITOR))).json()
    assert (body["members"], body["watchdog_leader"], body["drained_sites"]) == (None,) * 3
    assert body["in_flight"] is not None
    assert len(body["errors"]) == 3
    assert body["errors"][0].startswith("coordination service (members): "
                                        "CoordinationUnavailable: etcd get")


@pytest.mark.asyncio
async def test_unreachable_store_gives_null_in_flight(cluster_client: Client,
                                                      store: MemoryStore) -> None:
    store.unavailable = True
    r = await cluster_client.get("/api/v1/cluster", headers=auth(AUDITOR))
    body = await r.json()
    assert r.status == 200 and body["in_flight"] is None
    assert body["members"] is not None
    assert body["errors"] == ["campaign store: ConnectionError: campaign store unreachable"]


@pytest.mark.asyncio
async def test_node_without_coordination_says_so(client: Client) -> None:
    body = await (await client.get("/api/v1/cluster", headers=auth(AUDITOR))).json()
    assert body["members"] is None and body["in_flight"] == {}
    assert body["errors"] == ["coordination service: not configured on this node"]


@pytest.mark.asyncio
async def test_cluster_and_events_are_in_the_openapi_document(client: Client) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    op = document["paths"]["/api/v1/cluster"]["get"]
    assert op["operationId"] == "getCluster"
    assert op["x-roles"] == ["operator", "oncall", "auditor"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ClusterView"}
    schema = document["components"]["schemas"]["ClusterView"]
    assert set(schema["required"]) == {"node", "site", "members", "watchdog_leader",
                                       "drained_sites", "in_flight", "errors"}
    assert document["paths"]["/api/v1/events"]["post"]["x-roles"] == ["operator", "oncall"]
    assert document["paths"]["/api/v1/events"]["get"]["x-roles"] == [
        "operator", "oncall", "auditor"]


@pytest.mark.asyncio
async def test_operators_record_events_and_auditors_read_them(client: Client,
                                                              store: MemoryStore) -> None:
    body = {"kind": "operator.switchover", "sentence": "switchover to marseille done",
            "details": {"to": "marseille", "by": "forged"}}
    r = await client.post("/api/v1/events", headers=auth(AUDITOR), json=body)
    assert r.status == 403
    r = await client.post("/api/v1/events", headers=auth(ONCALL), json=body)
    assert r.status == 201, await r.text()
    event_id = (await r.json())["id"]
    [event] = store.events
    assert (event.id, event.kind, event.node, event.site) == (
        event_id, "operator.switchover", "paris-node1", "paris")
    assert event.details["to"] == "marseille"
    assert event.details["by"] == "olivier"  # set by the node, not by the caller
    r = await client.get("/api/v1/events?limit=5", headers=auth(AUDITOR))
    [listed] = (await r.json())["items"]
    assert listed["sentence"] == "switchover to marseille done" and listed["at"]


@pytest.mark.asyncio
@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "watchdog.move", "sentence": "forged"}, "kind"),
    ({"kind": "operator.Bad-Kind", "sentence": "x"}, "kind"),
    ({"kind": "operator.drain"}, "sentence"),
    ({"kind": "operator.drain", "sentence": "x", "details": [1]}, "details"),
    ({"kind": "operator.drain", "sentence": "x", "node": "other"}, "node"),
])
async def test_bad_events_are_refused_naming_the_field(client: Client, store: MemoryStore,
                                                       body: dict[str, object],
                                                       field: str) -> None:
    r = await client.post("/api/v1/events", headers=auth(OPERATOR), json=body)
    assert (r.status, (await r.json())["field"]) == (422, field)
    assert store.events == []
