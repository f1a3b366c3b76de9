"""The node's API over HTTPS as the node serves it (``nodes.api.server.serve`` with its
certificate): the CLI's client verifies it by the cluster's CA; nothing answers in clear; a
client that never finishes its TLS handshake is dropped within the header timeout; the
certificate expiries are on /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from cluster import tls as cli_tls
from cluster.httpjson import HttpError, request_json
from nodes.api.limits import HttpLimits
from nodes.api.server import Served, serve
from nodes.metrics import Metrics
from nodes.tls_config import CarrierTls, certificate_expiries
from tests.api.conftest import AUDITOR, make_app
from tests.fakes.memory_store import MemoryStore
from tests.tls_kit import TestPki

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest_asyncio.fixture
async def served(pki: TestPki) -> AsyncIterator[tuple[Served, Metrics]]:
    metrics = Metrics()
    files = pki.files("paris-node1")
    for name, expiry in certificate_expiries(files, CarrierTls()).items():
        metrics.certificate_expiry.set(expiry, certificate=name)
    node = await serve(make_app(MemoryStore(), metrics, limits=HttpLimits(header_timeout_s=1.0)),
                       HOST, 0, tls=files.server_context())
    yield node, metrics
    await node.close()


def get(url: str) -> tuple[int, object]:
    return request_json("GET", url, timeout=5.0, bearer=AUDITOR, accept_status=(200, 503))


async def test_the_cli_verifies_the_api_by_the_clusters_ca(
        served: tuple[Served, Metrics], pki: TestPki, tmp_path: Path) -> None:
    node, _ = served
    url = f"https://{HOST}:{node.port}/api/v1/cluster"
    cli_tls.configure(pki.ca_only())
    try:
        status, body = await asyncio.to_thread(get, url)
        assert status in (200, 503) and isinstance(body, dict)
        # a CA that did not sign the node's certificate: refused, nothing sent
        cli_tls.configure(TestPki(tmp_path / "other").ca_only())
        with pytest.raises(HttpError, match="CERTIFICATE_VERIFY_FAILED"):
            await asyncio.to_thread(get, url)
    finally:
        cli_tls.configure(None)


async def test_nothing_answers_in_clear(served: tuple[Served, Metrics]) -> None:
    node, _ = served
    reader, writer = await asyncio.open_connection(HOST, node.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: n\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert b"HTTP/1.1" not in answer and b"ok" not in answer


async def test_a_handshake_never_finished_is_dropped_within_the_header_timeout(
        served: tuple[Served, Metrics]) -> None:
    node, _ = served
    reader, writer = await asyncio.open_connection(HOST, node.port)
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
    assert time.monotonic() - started < 3.0
    writer.close()


async def test_metrics_show_when_each_certificate_expires(
        served: tuple[Served, Metrics], pki: TestPki) -> None:
    _, metrics = served
    text = metrics.render()
    lines = [line for line in text.splitlines()
             if line.startswith("tenir_certificate_expiry_timestamp_seconds{")]
    assert {line.split('"')[1] for line in lines} == {"host", "ca"}
    host = float(next(line for line in lines if '"host"' in line).split()[-1])
    assert 364 * 86400 < host - time.time() < 366 * 86400
