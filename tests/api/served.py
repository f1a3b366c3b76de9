"""A node's API served as in production (``nodes.api.server.serve``) on 127.0.0.1 from a thread
with its own event loop, so that synchronous clients (schemathesis, raw sockets) can reach it;
with the in-memory store, seeded with a scenario, a group and a campaign."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from nodes.api.limits import HttpLimits
from nodes.api.scenarios import parse_step
from nodes.api.server import Served, serve
from nodes.metrics import Metrics
from replication.store_api import ContactIn, ScenarioIn
from tests.api.conftest import EMAIL_STEP, SMS_STEP, VOICE_STEP, make_app
from tests.fakes.memory_store import MemoryStore

T = TypeVar("T")


@dataclass
class ServedNode:
    url: str
    store: MemoryStore
    metrics: Metrics
    app: web.Application
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the server's loop (for the store, or the server itself)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


async def seed_store(store: MemoryStore) -> None:
    steps = tuple(parse_step(s, f"steps[{i}]") for i, s in
                  enumerate((VOICE_STEP, SMS_STEP, EMAIL_STEP)))
    await store.create_scenario(ScenarioIn("alerte", steps, priority=2))
    await store.add_contacts([ContactIn(f"Agent {i}", mobile=f"+3361234560{i}",
                                        groups=("crise",)) for i in range(3)])
    await store.launch_campaign("alerte", "alice", group="crise")


@contextmanager
def served_node(limits: HttpLimits | None = None) -> Iterator[ServedNode]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="served-node", daemon=True)
    thread.start()
    store, metrics = MemoryStore(), Metrics()

    async def start() -> tuple[web.Application, Served]:
        await seed_store(store)
        app = make_app(store, metrics, limits=limits)
        return app, await serve(app, "127.0.0.1", 0)

    app, served = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    node = ServedNode(f"http://127.0.0.1:{served.port}", store, metrics, app, loop)
    try:
        yield node
    finally:
        node.run(served.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
