"""Shared fixtures of the carrier tests: in-process simulators on 127.0.0.1 (ports chosen by the
system), sinks that collect receipts and acknowledgements, and a local HTTP endpoint standing in
for the node's API (acknowledgement links, voice callbacks)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web

from nodes.carriers.callback_auth import HEADER
from nodes.carriers.sim.app import SimConfig, Simulator
from tests.carriers.support import (
    HOST,
    SMPP_PASSWORD,
    SMPP_USER,
    VOICE_CALLBACK_SECRET,
    Collector,
    Control,
    NodeApi,
    SimFactory,
)


@pytest_asyncio.fixture
async def collector() -> Collector:
    return Collector()


@pytest_asyncio.fixture
async def sim_factory() -> AsyncIterator[SimFactory]:
    started: list[Simulator] = []

    async def make(**overrides: Any) -> Simulator:
        config: dict[str, Any] = {"site": "paris", "host": HOST, "receipt_delay_ms": 20,
                                  "system_id": SMPP_USER, "password": SMPP_PASSWORD,
                                  "voice_callback_secret": VOICE_CALLBACK_SECRET}
        config.update(overrides)
        sim = Simulator(SimConfig(**config))
        await sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()


@pytest_asyncio.fixture
async def sim(sim_factory: SimFactory) -> Simulator:
    return await sim_factory()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def control(http: aiohttp.ClientSession, sim: Simulator) -> Control:
    return Control(http, sim)


@pytest_asyncio.fixture
async def node_api() -> AsyncIterator[NodeApi]:
    api = NodeApi(url="")

    async def page(request: web.Request) -> web.Response:  # opening the link records nothing
        api.opened.append(request.match_info["reference"])
        return web.Response(text=f'<form method="post" action="{request.path_qs}">'
                                 '<button>ok</button></form>', content_type="text/html")

    async def click(request: web.Request) -> web.Response:
        api.clicks.append(request.match_info["reference"])
        return web.Response(text="merci")

    async def callback(request: web.Request) -> web.Response:
        raw = await request.read()
        api.callback_bodies.append((raw, request.headers.get(HEADER)))
        api.callbacks.append(json.loads(raw))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/ack/{reference}", page)
    app.router.add_post("/ack/{reference}", click)
    app.router.add_post("/voice/callback", callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    api.url = f"http://{HOST}:{runner.addresses[0][1]}"
    yield api
    await runner.cleanup()
