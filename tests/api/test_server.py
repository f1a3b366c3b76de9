"""Serving limits: connection caps in all and per source address (503 at once, counted, the
slot given back when a connection closes), a request head and a body that must arrive in time,
and a connection cap kept below the open-file limit."""

from __future__ import annotations

import asyncio
import time

import pytest

from nodes.api.limits import HttpLimits
from nodes.api.server import FD_RESERVE, connection_cap, serve
from nodes.metrics import Metrics
from tests.api.conftest import make_app
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit

HOST = "127.0.0.1"


async def _open(port: int, source: str = HOST) -> tuple[asyncio.StreamReader,
                                                        asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, port, local_addr=(source, 0))


async def _healthz(port: int, source: str = HOST) -> bytes:
    reader, writer = await _open(port, source)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


@pytest.mark.asyncio
async def test_connection_caps_refuse_at_once_per_address_and_in_all() -> None:
    metrics = Metrics()
    limits = HttpLimits(max_connections=6, max_connections_per_address=3)
    served = await serve(make_app(MemoryStore(), metrics, limits=limits), HOST, 0)
    try:
        idle = [await _open(served.port) for _ in range(3)]  # 127.0.0.1's three slots
        assert (await _healthz(served.port)).startswith(b"HTTP/1.1 503")
        # another address still gets in, up to the total
        assert (await _healthz(served.port, "127.0.0.2")).startswith(b"HTTP/1.1 200")
        idle += [await _open(served.port, "127.0.0.3") for _ in range(3)]
        assert (await _healthz(served.port, "127.0.0.4")).startswith(b"HTTP/1.1 503")
        assert metrics.http_connections_refused.value(cap="address") == 1
        assert metrics.http_connections_refused.value(cap="total") == 1
        for _, writer in idle[:3]:  # closing gives the slots back
            writer.close()
        await asyncio.sleep(0.1)
        assert (await _healthz(served.port)).startswith(b"HTTP/1.1 200")
        for _, writer in idle[3:]:
            writer.close()
    finally:
        await served.close()


@pytest.mark.asyncio
async def test_slow_heads_and_bodies_are_cut_off_in_time() -> None:
    metrics = Metrics()
    limits = HttpLimits(header_timeout_s=0.5, public_body_timeout_s=0.5)
    served = await serve(make_app(MemoryStore(), metrics, limits=limits), HOST, 0)
    try:
        reader, writer = await _open(served.port)
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: n\r\n")  # never ends its head
        assert await asyncio.wait_for(reader.read(), 5) == b""
        head_closed = time.monotonic() - started
        reader, writer = await _open(served.port)
        writer.write(b"POST /api/v1/callbacks/voice HTTP/1.1\r\nHost: n\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), 5)
        body_closed = time.monotonic() - started
    finally:
        await served.close()
    assert head_closed < 1.5
    assert answer.startswith(b"HTTP/1.1 408") and b"request body not received" in answer
    assert body_closed < 2.5


def test_the_cap_stays_below_the_open_file_limit() -> None:
    assert connection_cap(HttpLimits(max_connections=1024), 20_000) == 1024
    assert connection_cap(HttpLimits(max_connections=1024), 1024) == 1024 - FD_RESERVE
