"""Serving limits: connection caps in all and per source address (503 at once, counted, the
slot given back when a connection closes), a request head and a body that must arrive in time,
a connection cap kept below the open-file limit, and a burst of connections taken a few per
loop iteration, in turn between source addresses."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nodes.api.limits import HttpLimits
from nodes.api.listener import HANDSHAKES_IN_ALL, PacedServer
from nodes.api.server import FD_RESERVE, connection_cap, serve
from nodes.metrics import Metrics
from tests.api.conftest import make_app
from tests.carriers.support import eventually
from tests.fakes.memory_store import MemoryStore
from tests.tls_kit import TestPki

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
    # as many open as waiting for their handshake, both below the limit with the reserve
    assert connection_cap(HttpLimits(max_connections=1024), 20_000) == 1024
    assert connection_cap(HttpLimits(max_connections=1024), 2048 + FD_RESERVE) == 1024
    assert connection_cap(HttpLimits(max_connections=1024), 1024) == (1024 - FD_RESERVE) // 2


class _Recorder(asyncio.Protocol):
    """Notes the loop iteration and the source address of each connection made."""

    def __init__(self, made: list[tuple[int, str]], ticks: list[int]) -> None:
        self.made, self.ticks = made, ticks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append((self.ticks[0], transport.get_extra_info("peername")[0]))


async def _burst(sources: list[str], **paced: Any) -> tuple[list[tuple[int, str]], list[str]]:
    """Connections from ``sources`` (one per item, in that order), all made while the loop is
    held so that the kernel queues every one before the server sees the first; returns the
    (loop iteration, address) of each connection made, in order, and the refusals."""
    loop = asyncio.get_running_loop()
    ticks, made, refused = [0], list[tuple[int, str]](), list[str]()
    stop = False

    def tick() -> None:  # once per loop iteration
        ticks[0] += 1
        if not stop:
            loop.call_soon(tick)

    server = await PacedServer.listen(HOST, 0, lambda: _Recorder(made, ticks), backlog=512,
                                      refused=refused.append, **paced)
    port = server.sockets[0].getsockname()[1]
    clients = [socket.create_connection((HOST, port), timeout=5, source_address=(source, 0))
               for source in sources]
    loop.call_soon(tick)
    try:
        await eventually(lambda: len(made) + len(refused) == len(sources),
                         what="every connection made or refused")
    finally:
        stop = True
        server.close()
        await server.wait_closed()
        for client in clients:
            client.close()
    return made, refused


@pytest.mark.asyncio
async def test_a_burst_of_connections_is_taken_a_few_per_loop_iteration() -> None:
    # 20 addresses: their per-address shares (4 each) would allow 80 at once, the slots 16
    made, refused = await _burst([f"127.0.0.{2 + n % 20}" for n in range(200)])
    assert len(made) == 200 and refused == []
    per_iteration = Counter(tick for tick, _ in made)
    assert HANDSHAKES_IN_ALL <= 16  # a few handshakes of half a millisecond each at a time
    assert max(per_iteration.values()) <= HANDSHAKES_IN_ALL, per_iteration.most_common(3)
    assert len(per_iteration) >= 200 // HANDSHAKES_IN_ALL


@pytest.mark.asyncio
async def test_an_address_sending_a_burst_delays_its_own_connections_not_the_others() -> None:
    made, _ = await _burst(["127.0.0.2"] * 150 + ["127.0.0.3"])
    order = [address for _, address in made]
    assert len(order) == 151
    # queued by the kernel behind 150 others, served among the first: its own turn
    assert order.index("127.0.0.3") < 30, order.index("127.0.0.3")


@pytest.mark.asyncio
async def test_past_the_waiting_bound_a_connection_is_closed_at_once_and_counted() -> None:
    made, refused = await _burst([HOST] * 40, max_waiting=10, per_tick=40)
    assert refused == ["waiting"] * 30 and len(made) == 10


@pytest.mark.asyncio
async def test_past_an_addresss_waiting_bound_its_connections_are_closed_not_the_others() -> None:
    made, refused = await _burst([HOST] * 10 + ["127.0.0.2"], max_waiting_per_address=5,
                                 per_tick=40)
    assert refused == ["address"] * 5
    assert Counter(address for _, address in made) == {HOST: 5, "127.0.0.2": 1}


async def _silent(port: int, source: str, n: int) -> list[tuple[asyncio.StreamReader,
                                                                asyncio.StreamWriter]]:
    """``n`` TCP connections from ``source`` that never send a ClientHello."""
    return [await asyncio.open_connection(HOST, port, local_addr=(source, 0)) for _ in range(n)]


@contextlib.asynccontextmanager
async def _tls_listener(tmp_path: Path, **paced: Any) -> AsyncIterator[tuple[PacedServer, int,
                                                                            TestPki]]:
    """A paced TLS listener on 127.0.0.1 that does nothing with its connections; its port."""
    pki = TestPki(tmp_path)
    server = await PacedServer.listen(HOST, 0, asyncio.Protocol, backlog=128,
                                      tls=pki.files("paris-node1").server_context(), **paced)
    try:
        yield server, server.sockets[0].getsockname()[1], pki
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_clients_that_send_nothing_do_not_keep_others_from_their_handshake(
        tmp_path: Path) -> None:
    async with _tls_listener(tmp_path, handshake_timeout_s=30.0, in_all=4,
                             per_address=1) as (server, port, pki):
        silent = [c for n in range(2, 8) for c in await _silent(port, f"127.0.0.{n}", 3)]
        context = ssl.create_default_context(cafile=str(pki.ca_only().ca))
        started = time.monotonic()
        _, writer = await asyncio.wait_for(asyncio.open_connection(
            HOST, port, ssl=context, local_addr=("127.0.0.99", 0)), 5)
        took = time.monotonic() - started
        writer.close()
        # every slot was held by a silent client when it came: each gave its slot back
        # after SLOT_S, not at the 30 s handshake timeout
        assert took < 1.0, took
        assert server.waiting >= 18  # the silent ones are still there, handshaking
    for _, w in silent:
        w.close()


@pytest.mark.asyncio
async def test_a_connection_queued_past_the_handshake_timeout_is_closed(tmp_path: Path) -> None:
    async with _tls_listener(tmp_path, handshake_timeout_s=0.3, per_address=1) as (
            server, port, _):
        # one handshake starts per 0.1 s (its slot given back after SLOT_S): the 100th would
        # start after 10 s; queued past the timeout, they are closed by the sweep
        silent = await _silent(port, HOST, 100)
        reads = [reader.read() for reader, _ in silent]
        assert await asyncio.wait_for(asyncio.gather(*reads), 3) == [b""] * 100
        await eventually(lambda: server.waiting == 0 and server.queued == 0,
                         what="nothing left waiting")
    for _, w in silent:
        w.close()


@pytest.mark.asyncio
async def test_closing_stops_accepting_and_ends_the_handshakes_under_way(
        tmp_path: Path) -> None:
    async with _tls_listener(tmp_path, handshake_timeout_s=30.0, per_address=2) as (
            server, port, _):
        # no ClientHello: two handshakes started, three waiting for their turn, which comes
        # as the first give their slots back (SLOT_S)
        silent = await _silent(port, HOST, 5)
        await eventually(lambda: server.waiting == 5, what="five accepted")
        assert server.is_serving() and server.queued == 3
        await eventually(lambda: server.queued == 0, what="every one's turn")
        assert server.waiting == 5
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)  # not the 30 s handshake timeout
        assert not server.is_serving() and server.sockets == () and server.waiting == 0
    for reader, writer in silent:
        assert await asyncio.wait_for(reader.read(), 5) == b""  # dropped
        writer.close()
    with pytest.raises(OSError):
        socket.create_connection((HOST, port), timeout=2).close()
