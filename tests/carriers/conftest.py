"""Shared fixtures of the carrier tests: in-process simulators on 127.0.0.1 (ports chosen by the
system), sinks that collect receipts and acknowledgements, and a local HTTP endpoint standing in
for the node's API (acknowledgement links, voice callbacks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

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
    serve_node_api,
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
    api, runner = await serve_node_api()
    yield api
    await runner.cleanup()
