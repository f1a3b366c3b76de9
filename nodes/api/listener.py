"""Accepting connections at a pace the event loop can absorb, fairly between source addresses.

A node's API, its dispatcher and its membership heartbeat share one event loop. asyncio's own
server accepts up to its ``backlog`` (512 here) connections each time the listening socket is
ready, and every TLS handshake of those connections then runs in the same loop iteration: on
the lab, 600 clients of three addresses connecting at once held the loop for 0.74 to 0.96 s
(about half a millisecond of CPU per server-side handshake, more on two shared cores), and a
health probe from a fourth address waited behind all 600 handshakes.

:class:`PacedServer` therefore:

* accepts at most ``per_tick`` connections each time the socket is ready (the kernel keeps the
  rest in its queue, the listen backlog stays large, the socket is still readable at the next
  iteration): accepting costs microseconds, so the queue empties quickly;
* starts handshakes in ``in_all`` slots, at most ``per_address`` of them held by one source
  address; the others wait in one queue per address, served in turn (round robin), so that an
  address sending hundreds of connections delays its own, not the others'. The crypto run in one
  loop iteration is bounded by ``in_all`` handshakes. A handshake gives its slot back when it
  ends or after ``SLOT_S`` (0.1 s), whichever comes first: answering the ClientHello, the costly
  part, is done by then, and a client that sends nothing holds a slot 0.1 s, not the 10 s of
  the handshake timeout (which still closes it);
* bounds the connections waiting or handshaking by ``max_waiting`` in all and by
  ``max_waiting_per_address`` from one address: past either a new connection is closed at once
  (``refused("waiting")`` / ``refused("address")``), so one address cannot fill the queue of
  all; a queued connection older than the handshake timeout is closed (a sweep each second:
  its client has given up).

Each connection becomes a transport by ``loop.connect_accepted_socket`` in a task owned by the
server (a TLS handshake that fails or outlasts ``handshake_timeout_s`` closes that connection
only); ``close()`` stops accepting, closes those waiting and cancels the handshakes under way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
from collections import OrderedDict, deque
from collections.abc import Callable

log = logging.getLogger("tenir.api.listener")

ACCEPTS_PER_TICK = 32
HANDSHAKES_IN_ALL = 16
HANDSHAKES_PER_ADDRESS = 4
SLOT_S = 0.1  # the longest a handshake holds its slot


def tally(counts: dict[str, int], key: str, n: int) -> None:
    """Add ``n`` to ``counts[key]``, dropping the key at zero (counts per address stay small)."""
    left = counts.get(key, 0) + n
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


class PacedServer(asyncio.AbstractServer):
    """A listening TCP socket served by ``protocol_factory``, paced and fair (module doc)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol_factory: Callable[[], asyncio.BaseProtocol], *,
                 tls: ssl.SSLContext | None, handshake_timeout_s: float,
                 max_waiting: int, max_waiting_per_address: int | None = None,
                 refused: Callable[[str], None] | None = None,
                 per_tick: int = ACCEPTS_PER_TICK, in_all: int = HANDSHAKES_IN_ALL,
                 per_address: int = HANDSHAKES_PER_ADDRESS) -> None:
        for name, value in (("per_tick", per_tick), ("in_all", in_all),
                            ("per_address", per_address), ("max_waiting", max_waiting)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self._loop = loop
        self._sock = sock
        self._factory = protocol_factory
        self._tls = tls
        self.handshake_timeout_s = handshake_timeout_s
        self.max_waiting = max_waiting
        self._refused = refused
        self.per_tick, self.in_all, self.per_address = per_tick, in_all, per_address
        self._serving = False
        self._closed = False
        self.max_waiting_per_address = max_waiting_per_address or max_waiting
        self._running: set[asyncio.Task[None]] = set()  # every connection handshaking
        self._holding: dict[asyncio.Task[None], str] = {}  # those holding a slot: address
        self._slots_by: dict[str, int] = {}  # slots held per address
        self._open_by: dict[str, int] = {}  # queued or handshaking per address
        self._sweeper: asyncio.TimerHandle | None = None
        self._queues: OrderedDict[str, deque[tuple[socket.socket, float]]] = OrderedDict()
        self.queued = 0

    @classmethod
    async def listen(cls, host: str | None, port: int,
                     protocol_factory: Callable[[], asyncio.BaseProtocol], *,
                     backlog: int, tls: ssl.SSLContext | None = None,
                     handshake_timeout_s: float = 10.0, max_waiting: int = 1024,
                     max_waiting_per_address: int | None = None,
                     refused: Callable[[str], None] | None = None,
                     per_tick: int = ACCEPTS_PER_TICK, in_all: int = HANDSHAKES_IN_ALL,
                     per_address: int = HANDSHAKES_PER_ADDRESS) -> PacedServer:
        """Bind ``host:port`` (None: every address; port 0: any free port), listen and start
        accepting."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        server = cls(loop, sock, protocol_factory, tls=tls,
                     handshake_timeout_s=handshake_timeout_s, max_waiting=max_waiting,
                     max_waiting_per_address=max_waiting_per_address, refused=refused,
                     per_tick=per_tick, in_all=in_all, per_address=per_address)
        await server.start_serving()
        return server

    @property
    def waiting(self) -> int:
        """Connections accepted and not yet served: queued or handshaking."""
        return self.queued + len(self._running)

    # accepting

    def _ready(self) -> None:
        for _ in range(self.per_tick):
            try:
                conn, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                break  # the queue is empty
            except OSError as exc:  # out of descriptors or buffers: pause, then try again
                log.warning("accept failed (%s): accepting again in 1 s", exc.strerror or exc)
                self._loop.remove_reader(self._sock.fileno())
                self._loop.call_later(1.0, self._resume)
                break
            address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
            cap = ("waiting" if self.waiting >= self.max_waiting else
                   "address" if self._open_by.get(address, 0) >= self.max_waiting_per_address
                   else None)
            if cap is not None:
                conn.close()
                if self._refused is not None:
                    self._refused(cap)
                continue
            conn.setblocking(False)
            self._queues.setdefault(address, deque()).append((conn, self._loop.time()))
            self.queued += 1
            tally(self._open_by, address, 1)
        self._start_turns()

    def _resume(self) -> None:
        if self._serving:
            self._loop.add_reader(self._sock.fileno(), self._ready)

    def _start_turns(self) -> None:
        """Start handshakes while slots are free, one address after the other: the address at
        the head of the line starts one and goes to the back (``_pop``); one at its share of
        slots is passed over."""
        passed = 0  # addresses passed over in a row
        while self._queues and len(self._holding) < self.in_all and passed < len(self._queues):
            address = next(iter(self._queues))
            if self._slots_by.get(address, 0) >= self.per_address:
                self._queues.move_to_end(address)
                passed += 1
                continue
            passed = 0
            conn, _ = self._pop(address)
            task = self._loop.create_task(self._connect(conn))
            self._running.add(task)
            self._holding[task] = address
            tally(self._slots_by, address, 1)
            task.add_done_callback(functools.partial(self._finished, address=address))
            self._loop.call_later(SLOT_S, self._release, task)

    def _pop(self, address: str) -> tuple[socket.socket, float]:
        queue = self._queues[address]
        item = queue.popleft()
        self.queued -= 1
        if queue:
            self._queues.move_to_end(address)
        else:
            del self._queues[address]
        return item

    def _release(self, task: asyncio.Task[None]) -> None:
        """Give back ``task``'s slot: its handshake ended, or ran ``SLOT_S`` (by then the
        server's costly part, answering the ClientHello, is done or the client is silent)."""
        address = self._holding.pop(task, None)
        if address is not None:
            tally(self._slots_by, address, -1)
            if not self._closed:
                self._start_turns()

    def _finished(self, task: asyncio.Task[None], *, address: str) -> None:
        self._running.discard(task)
        tally(self._open_by, address, -1)
        self._release(task)

    def _sweep(self) -> None:
        """Close the queued connections that waited longer than the handshake timeout."""
        if self._closed:
            return
        deadline = self._loop.time() - self.handshake_timeout_s
        for address in list(self._queues):
            queue = self._queues[address]
            while queue and queue[0][1] < deadline:
                conn, _ = self._pop(address)
                conn.close()
                tally(self._open_by, address, -1)
                if address not in self._queues:
                    break
        self._sweeper = self._loop.call_later(1.0, self._sweep)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                self._factory, conn, ssl=self._tls,
                ssl_handshake_timeout=self.handshake_timeout_s if self._tls else None)
        except OSError as exc:  # SSL errors and the handshake timeout too: the transport closed it
            log.debug("connection dropped before it was served: %r", exc)
            conn.close()

    # asyncio.AbstractServer

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed else (self._sock,)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._closed:
            raise RuntimeError("the server is closed")
        if not self._serving:
            self._serving = True
            self._loop.add_reader(self._sock.fileno(), self._ready)
            self._sweeper = self._loop.call_later(1.0, self._sweep)

    def close(self) -> None:
        if self._closed:
            return
        self._closed, self._serving = True, False
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for queue in self._queues.values():
            for conn, _ in queue:
                conn.close()
        self._queues.clear()
        self.queued = 0
        self._open_by.clear()
        for task in self._running:
            task.cancel()

    async def wait_closed(self) -> None:
        running = list(self._running)
        if running:
            await asyncio.gather(*running, return_exceptions=True)
