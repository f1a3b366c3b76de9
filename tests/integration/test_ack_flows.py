"""End to end on loopback: a node (API served as in production, dispatcher, real carrier
adapters, PostgreSQL store) and the carrier simulator. A call answered with "1" comes back as a
callback the simulator signs, to the URL the node signed; an e-mail's link is opened and its
button pressed by the simulator: both acknowledge. A simulator that signs with another secret
acknowledges nothing, and nothing of its callbacks is stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import psycopg
import pytest
import pytest_asyncio

from nodes.api.app import create_app
from nodes.api.server import Served, serve
from nodes.carriers.callback_auth import CallbackVerifier
from nodes.carriers.sim.app import SimConfig, Simulator
from nodes.carriers.smtp import SmtpAdapter
from nodes.carriers.voice import VoiceAdapter
from nodes.dispatcher import Dispatcher, DispatcherConfig
from nodes.metrics import Metrics
from nodes.signing import AckKey, AckSigner, CallbackUrls
from nodes.users import ApiUser
from replication.store import PgCampaignStore
from replication.store_api import ChannelStep, ContactIn, ScenarioIn

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

HOST = "127.0.0.1"
CARRIER_SECRET = "the-voice-carrier-shares-this-0123456789"
SIGNER = AckSigner([AckKey("k1", "cluster-ack-key-for-the-e2e-test-012345")])


@dataclass
class Node:
    store: PgCampaignStore
    dispatcher: Dispatcher
    metrics: Metrics
    served: Served


async def start_node(store: PgCampaignStore, sim: Simulator) -> tuple[Node, list[object]]:
    metrics = Metrics()
    voice = VoiceAdapter(base_url=f"http://{HOST}:{sim.ports['voice']}", name="voice-paris",
                         timeout_s=2.0)
    smtp = SmtpAdapter(host=HOST, port=sim.ports["smtp"], sender="alerte@paris.invalid",
                       name="smtp-paris", timeout_s=2.0)
    dispatcher = Dispatcher(store, {"voice": voice, "email": smtp},
                            DispatcherConfig(node="paris-node1", site="paris", lease_s=10.0,
                                             idle_poll_s=0.05, receipt_timeout_s=3.0),
                            metrics=metrics)
    for adapter in (voice, smtp):
        await adapter.start(dispatcher.on_receipt, dispatcher.on_ack)
    app = create_app(store, node="paris-node1", site="paris", metrics=metrics,
                     users=[ApiUser.with_token("alice", "operator", "e2e-operator-token-0001")],
                     signer=SIGNER, carrier_auth=CallbackVerifier([CARRIER_SECRET]),
                     in_flight=dispatcher, on_ack=dispatcher.on_ack,
                     on_receipt=dispatcher.on_receipt)
    served = await serve(app, HOST, 0)
    dispatcher.urls = CallbackUrls(f"http://{HOST}:{served.port}", SIGNER)
    return Node(store, dispatcher, metrics, served), [voice, smtp]


@pytest_asyncio.fixture
async def simulator(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    secret = getattr(request, "param", CARRIER_SECRET)
    sim = Simulator(SimConfig(site="paris", host=HOST, receipt_delay_ms=20,
                              voice_callback_secret=secret))
    await sim.start()
    yield sim
    await sim.stop()


async def run_campaign(store: PgCampaignStore, sim: Simulator, step: ChannelStep,
                       timeout: float = 20.0) -> tuple[int, Node]:
    await store.add_contacts([
        ContactIn(f"Agent {i}", phone=f"+3361234560{i}", email=f"agent{i}@sdis.example.fr",
                  groups=("astreinte",)) for i in range(4)])
    await store.create_scenario(ScenarioIn("mobilisation", (step,)))
    campaign = await store.launch_campaign("mobilisation", "alice", group="astreinte")
    node, adapters = await start_node(store, sim)
    task = asyncio.create_task(node.dispatcher.run())
    try:
        async with asyncio.timeout(timeout):
            while (await store.campaign_summary(campaign)).pending:
                await asyncio.sleep(0.05)
    finally:
        node.dispatcher.request_stop("drain")
        await task
        await node.served.close()
        for adapter in adapters:
            await adapter.close()  # type: ignore[attr-defined]
    return campaign, node


VOICE = ChannelStep("voice", {"fr": "Appuyez sur 1"}, retries=0, ack="dtmf", ack_timeout_s=5)
EMAIL = ChannelStep("email", {"fr": "Confirmez"}, retries=0, ack="link", ack_timeout_s=5)


async def test_voice_acknowledgements_come_back_signed_and_are_recorded(
    store: PgCampaignStore, simulator: Simulator,
) -> None:
    campaign, node = await run_campaign(store, simulator, VOICE)
    summary = await store.campaign_summary(campaign)
    assert (summary.acknowledged, summary.failed) == (4, 0)
    assert node.metrics.callbacks.value(kind="voice", result="acknowledged") == 4
    assert node.metrics.callbacks_refused.samples() == []


async def test_email_links_are_opened_then_confirmed_and_recorded(
    store: PgCampaignStore, simulator: Simulator, db_dsn: str,
) -> None:
    campaign, node = await run_campaign(store, simulator, EMAIL)
    summary = await store.campaign_summary(campaign)
    assert (summary.acknowledged, summary.failed) == (4, 0)
    assert node.metrics.callbacks.value(kind="link", result="acknowledged") == 4
    async with await psycopg.AsyncConnection.connect(db_dsn) as conn:
        cur = await conn.execute("SELECT count(*), bool_and(matched) FROM acknowledgements")
        assert await cur.fetchone() == (4, True)


@pytest.mark.parametrize("simulator", ["a-carrier-with-another-secret-0123456789"],
                         indirect=True)
async def test_callbacks_signed_with_another_secret_acknowledge_nothing(
    store: PgCampaignStore, simulator: Simulator, db_dsn: str,
) -> None:
    campaign, node = await run_campaign(store, simulator, VOICE)
    summary = await store.campaign_summary(campaign)
    assert (summary.acknowledged, summary.failed) == (0, 4)  # no receipt ever accepted
    assert node.metrics.callbacks_refused.value(kind="voice",
                                                reason="carrier_bad_signature") == 4
    async with await psycopg.AsyncConnection.connect(db_dsn) as conn:
        cur = await conn.execute("SELECT (SELECT count(*) FROM receipts),"
                                 " (SELECT count(*) FROM acknowledgements)")
        assert await cur.fetchone() == (0, 0)
