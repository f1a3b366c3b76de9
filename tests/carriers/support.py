"""Helpers of the carrier tests: addresses and credentials, a polling wait, sinks that collect
receipts and acknowledgements, a client of the simulator's control API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from nodes.carriers.base import Ack, Receipt
from nodes.carriers.sim.app import Simulator

HOST = "127.0.0.1"
SMPP_USER = "tenir"
SMPP_PASSWORD = "s3cr3tZq"  # test credential, checked never to appear in logs
VOICE_CALLBACK_SECRET = "voice-callback-secret-for-tests-0123456789"  # shared with the node

SimFactory = Callable[..., Awaitable[Simulator]]


async def eventually(predicate: Callable[[], bool], within: float = 5.0,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Collector:
    """Receipt and ack sinks that remember what they were given."""

    receipts: list[Receipt] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    fail_receipts: int = 0  # the next N receipts raise, as a failing database would

    async def on_receipt(self, receipt: Receipt) -> None:
        if self.fail_receipts > 0:
            self.fail_receipts -= 1
            raise RuntimeError("sink down")
        self.receipts.append(receipt)

    async def on_ack(self, ack: Ack) -> None:
        self.acks.append(ack)


class Control:
    """The simulator's control API, as a test drives it."""

    def __init__(self, http: aiohttp.ClientSession, sim: Simulator) -> None:
        self.http = http
        self.base = f"http://{HOST}:{sim.ports['control']}"

    async def set(self, **payload: Any) -> dict[str, Any]:
        async with self.http.post(f"{self.base}/control", json=payload) as resp:
            body: dict[str, Any] = await resp.json()
            assert resp.status == 200, body
            return body

    async def post_raw(self, path: str, data: Any) -> tuple[int, dict[str, Any]]:
        kwargs: dict[str, Any] = {"data": data} if isinstance(data, (str, bytes)) \
            else {"json": data}
        async with self.http.post(f"{self.base}{path}", **kwargs) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(f"{self.base}{path}") as resp:
            return resp.status, await resp.json()

    async def report(self) -> dict[str, Any]:
        status, body = await self.get("/report")
        assert status == 200
        result: dict[str, Any] = body
        return result


@dataclass
class NodeApi:
    """A local aiohttp endpoint recording what the simulators send to the node's API."""

    url: str
    opened: list[str] = field(default_factory=list)  # acknowledgement pages opened (GET)
    clicks: list[str] = field(default_factory=list)  # their buttons pressed (POST)
    callbacks: list[Any] = field(default_factory=list)
    callback_bodies: list[tuple[bytes, str | None]] = field(default_factory=list)  # + signature


A = TypeVar("A")  # an adapter class: SmppAdapter, SmtpAdapter, VoiceAdapter


@asynccontextmanager
async def adapter_factory(
    collector: Collector, build: Callable[..., A], defaults: Callable[[Simulator], dict[str, Any]],
) -> AsyncIterator[Callable[..., Awaitable[A]]]:
    """``make(sim, **overrides)`` builds an adapter on ``sim`` (``defaults(sim)`` then the
    overrides), starts it with the collector's sinks, and closes every one made on exit."""
    made: list[Any] = []

    async def make(sim: Simulator, **kwargs: object) -> A:
        adapter = build(**{**defaults(sim), **kwargs})
        await adapter.start(collector.on_receipt, collector.on_ack)  # type: ignore[attr-defined]
        made.append(adapter)
        return adapter

    try:
        yield make
    finally:
        for adapter in made:
            await adapter.close()
