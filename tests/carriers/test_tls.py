"""The carrier adapters against the simulators over TLS, as the lab deploys them: SMPP over TLS,
SMTP with STARTTLS required, voice and the control API over HTTPS, and the simulator's own
clients (voice callbacks, e-mail link clicks) verifying the node's API by the cluster's CA."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from nodes.carriers.base import Message
from nodes.carriers.sim.app import SimConfig, Simulator
from nodes.carriers.smpp import SmppAdapter
from nodes.carriers.smtp import SmtpAdapter
from nodes.carriers.voice import VoiceAdapter
from tests.carriers.support import (
    HOST,
    SMPP_PASSWORD,
    SMPP_USER,
    VOICE_CALLBACK_SECRET,
    Collector,
    NodeApi,
    eventually,
    serve_node_api,
)
from tests.tls_kit import TestPki

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("other"))


@pytest_asyncio.fixture
async def sim(pki: TestPki) -> AsyncIterator[Simulator]:
    s = Simulator(SimConfig(site="paris", host=HOST, receipt_delay_ms=20, system_id=SMPP_USER,
                            password=SMPP_PASSWORD, voice_callback_secret=VOICE_CALLBACK_SECRET,
                            tls=pki.files("paris-carriers")))
    await s.start()
    yield s
    await s.stop()


@pytest_asyncio.fixture
async def node_api(pki: TestPki) -> AsyncIterator[NodeApi]:
    """The node's API stand-in, over HTTPS with a node's certificate of the same CA."""
    api, runner = await serve_node_api(pki.files("paris-node1").server_context())
    yield api
    await runner.cleanup()


def client(pki: TestPki) -> ssl.SSLContext:
    return pki.ca_only().client_context()


def message(channel: str, n: int, ack: str = "none", callback_url: str | None = None) -> Message:
    to = {"sms": "+33612345678", "email": f"agent{n}@mairie.test", "voice": "+33491000042"}
    return Message(reference=f"3:{n}:{channel}:0", channel=channel,  # type: ignore[arg-type]
                   to=to[channel], text="Alerte", ack=ack,  # type: ignore[arg-type]
                   callback_url=callback_url)


async def test_smpp_over_tls_submits_and_gets_its_receipt(
        sim: Simulator, pki: TestPki, collector: Collector) -> None:
    adapter = SmppAdapter(host=HOST, port=sim.ports["smpp"], system_id=SMPP_USER,
                          password=SMPP_PASSWORD, timeout_s=2.0, tls=client(pki))
    await adapter.start(collector.on_receipt, collector.on_ack)
    try:
        assert (await adapter.send(message("sms", 1))).accepted
        await eventually(lambda: len(collector.receipts) == 1, what="the delivery receipt")
    finally:
        await adapter.close()


@pytest.mark.parametrize("how", ["plain", "another CA"])
async def test_smpp_refused_in_clear_or_to_a_server_of_another_ca(
        sim: Simulator, other_ca: TestPki, collector: Collector, how: str) -> None:
    adapter = SmppAdapter(host=HOST, port=sim.ports["smpp"], system_id=SMPP_USER,
                          password=SMPP_PASSWORD, timeout_s=1.0, connect_timeout_s=1.0,
                          tls=None if how == "plain" else client(other_ca))
    try:
        if how == "plain":
            # in clear against TLS: no bind, as with a carrier that does not answer yet; the
            # node starts, its SMS channel down, and sends nothing
            await adapter.start(collector.on_receipt, collector.on_ack)
            assert not adapter.bound
            sent = await adapter.send(message("sms", 1))
            assert not sent.accepted and sent.retryable
        else:  # a carrier our CA does not sign: a configuration error, said at start
            with pytest.raises(ssl.SSLCertVerificationError):
                await adapter.start(collector.on_receipt, collector.on_ack)
    finally:
        await adapter.close()
    assert list(sim.state.submissions.entries()) == []


async def test_smtp_with_starttls_delivers_and_the_link_is_clicked_over_https(
        sim: Simulator, pki: TestPki, collector: Collector, node_api: NodeApi) -> None:
    adapter = SmtpAdapter(host=HOST, port=sim.ports["smtp"], sender="alerte@paris.invalid",
                          timeout_s=2.0, tls=client(pki))
    await adapter.start(collector.on_receipt, collector.on_ack)
    try:
        link = f"{node_api.url}/ack/3:1:email:0"
        assert (await adapter.send(message("email", 1, "link", link))).accepted
        await eventually(lambda: node_api.clicks == ["3:1:email:0"], what="the link clicked")
    finally:
        await adapter.close()


async def test_smtp_without_starttls_is_refused_before_any_message(
        sim: Simulator, collector: Collector) -> None:
    adapter = SmtpAdapter(host=HOST, port=sim.ports["smtp"], sender="alerte@paris.invalid",
                          timeout_s=2.0, start_tls=False)
    await adapter.start(collector.on_receipt, collector.on_ack)
    try:
        result = await adapter.send(message("email", 2))
        assert not result.accepted
        assert "530" in (result.error or "") and "STARTTLS" in (result.error or "")
    finally:
        await adapter.close()
    assert list(sim.state.submissions.entries()) == []


async def test_voice_over_https_calls_back_the_node_over_https(
        sim: Simulator, pki: TestPki, collector: Collector, node_api: NodeApi) -> None:
    adapter = VoiceAdapter(base_url=f"https://{HOST}:{sim.ports['voice']}", timeout_s=2.0,
                           callback_url=f"{node_api.url}/voice/callback", tls=client(pki))
    await adapter.start(collector.on_receipt, collector.on_ack)
    try:
        assert (await adapter.send(message("voice", 1, "dtmf"))).accepted
        await eventually(lambda: len(node_api.callbacks) == 1, what="the call's callback")
        assert node_api.callbacks[0]["reference"] == "3:1:voice:0"
    finally:
        await adapter.close()


async def test_voice_and_control_refuse_plain_http(sim: Simulator, pki: TestPki,
                                                   tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        for port in (sim.ports["voice"], sim.ports["control"]):
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"http://{HOST}:{port}/healthz") as resp:
                    await resp.read()
        async with http.get(f"https://{HOST}:{sim.ports['control']}/healthz",
                            ssl=client(pki)) as resp:
            assert resp.status == 200
