"""Serving the API so that slow or many clients cannot exhaust the node.

* A connection must send a complete request head within ``header_timeout_s`` of opening or of
  its previous response, else it is closed; an idle keep-alive connection is closed after the
  same time (aiohttp's keep-alive timer, armed at accept and after each response, closes a
  connection still waiting for a request head when it fires).
* Bodies are bounded in size and time per route (``nodes/api/bodies.py``); a body the handler
  did not read is drained for at most ``LINGER_S`` before the connection closes.
* At most ``max_connections`` open connections, ``max_connections_per_address`` from one
  source address: past either cap a new connection gets ``503`` and is closed at once, before
  any parsing (counted in ``tenir_http_connections_refused_total{cap}``). With the caps below
  the process's file descriptor limit, accept() never runs out of descriptors: the store's
  pool and the carriers keep theirs.
* Request lines and header fields are limited to 8 KiB and 100 headers (aiohttp answers 400).
* Connections are accepted a few per loop iteration and their TLS handshakes run a few at a
  time, in turn between source addresses (``nodes/api/listener.py``): a burst of handshakes
  does not hold the loop the heartbeat runs on, and one address's burst delays its own
  connections, not the others'. At most ``max_connections`` more wait for that turn.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from dataclasses import dataclass

from aiohttp import web

from nodes.api.context import CONTEXT
from nodes.api.limits import HttpLimits
from nodes.api.listener import PacedServer, tally
from nodes.metrics import Metrics

log = logging.getLogger("tenir.api.server")

LINGER_S = 1.0
MAX_LINE = 8190
MAX_HEADERS = 100
FD_RESERVE = 256  # descriptors kept for the store's pool, carriers, coordination, logs
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nRetry-After: 1\r\nContent-Length: 32\r\n\r\n"
            b'{"error":"too many connections"}')


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "unknown"


class ConnectionGate:
    """Counts open connections, in all and per source address."""

    def __init__(self, total: int, per_address: int, metrics: Metrics) -> None:
        self.total = total
        self.per_address = per_address
        self.metrics = metrics
        self.open = 0
        self._by_address: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        if self.open >= self.total:
            self.metrics.http_connections_refused.inc(cap="total")
            return False
        if self._by_address.get(address, 0) >= self.per_address:
            self.metrics.http_connections_refused.inc(cap="address")
            return False
        self.open += 1
        tally(self._by_address, address, 1)
        self.metrics.http_connections.set(self.open)
        return True

    def release(self, address: str) -> None:
        self.open -= 1
        tally(self._by_address, address, -1)
        self.metrics.http_connections.set(self.open)


class _GatedProtocol(asyncio.Protocol):
    """Admits a connection through the gate, then hands every event to aiohttp's handler."""

    def __init__(self, server: web.Server, gate: ConnectionGate) -> None:
        self._server = server
        self._gate = gate
        self._inner: asyncio.Protocol | None = None
        self._address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        address = _peer(transport)
        if not self._gate.admit(address):
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_REFUSAL)
            transport.close()
            return
        self._address = address
        self._inner = self._server()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._gate.release(self._address)
            inner, self._inner = self._inner, None
            inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class GatedTCPSite(web.TCPSite):
    """A TCP site whose connections go through a :class:`ConnectionGate`; with ``tls``, over
    TLS (a connection is admitted once its handshake is done, which must be within the header
    timeout: a client that never finishes it holds nothing for long)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: ConnectionGate,
                 backlog: int = 512, tls: ssl.SSLContext | None = None,
                 handshake_timeout_s: float = 10.0) -> None:
        super().__init__(runner, host, port, backlog=backlog)
        self.gate = gate
        self.tls = tls
        self.handshake_timeout_s = handshake_timeout_s

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await PacedServer.listen(
            self._host, self._port, lambda: _GatedProtocol(server, self.gate),
            backlog=self._backlog, tls=self.tls, handshake_timeout_s=self.handshake_timeout_s,
            max_waiting=self.gate.total, max_waiting_per_address=self.gate.per_address,
            refused=self._refused)

    def _refused(self, cap: str) -> None:
        self.gate.metrics.http_connections_refused.inc(cap=cap)


@dataclass
class Served:
    runner: web.AppRunner
    site: GatedTCPSite

    @property
    def port(self) -> int:
        return int(self.runner.addresses[0][1])

    async def close(self) -> None:
        await self.runner.cleanup()


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft limit on open files towards ``wanted`` (never past the hard limit);
    returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(limits: HttpLimits, fd_limit: int) -> int:
    """The connection cap: the configured one, or less so that as many connections open and as
    many more waiting for their turn (``nodes/api/listener.py``) stay ``FD_RESERVE`` below the
    descriptor limit."""
    return max(1, min(limits.max_connections, (fd_limit - FD_RESERVE) // 2))


async def serve(app: web.Application, host: str, port: int,
                tls: ssl.SSLContext | None = None) -> Served:
    """Serve ``app`` (made by ``create_app``) on ``host:port`` (0: any free port) with the
    limits it was made with; over HTTPS with ``tls``."""
    limits, metrics = app[CONTEXT].limits, app[CONTEXT].metrics
    fd_limit = raise_fd_limit(2 * limits.max_connections + FD_RESERVE)
    total = connection_cap(limits, fd_limit)
    if total < limits.max_connections:
        log.warning("connection cap lowered from %d to %d: the process may open %d files",
                    limits.max_connections, total, fd_limit)
    gate = ConnectionGate(total, min(total, limits.max_connections_per_address), metrics)
    runner = web.AppRunner(
        app, access_log=None, keepalive_timeout=limits.header_timeout_s,
        lingering_time=LINGER_S, max_line_size=MAX_LINE, max_field_size=MAX_LINE,
        max_headers=MAX_HEADERS, shutdown_timeout=5.0)
    await runner.setup()
    site = GatedTCPSite(runner, host, port, gate, tls=tls,
                        handshake_timeout_s=limits.header_timeout_s)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return Served(runner, site)
