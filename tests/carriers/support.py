"""Helpers of the carrier tests: addresses and credentials, a polling wait, sinks that collect
receipts and acknowledgements, a client of the simulator's control API."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from nodes.carriers.base import Ack, Receipt
from nodes.carriers.callback_auth import HEADER
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


async def serve_node_api(tls: ssl.SSLContext | None = None) -> tuple[NodeApi, web.AppRunner]:
    """A stand-in of the node's API on 127.0.0.1 (HTTPS with ``tls``) recording what the
    simulators send it: the acknowledgement page (GET) and its button (POST), voice callbacks
    with their signature. Clean it up with the runner."""
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
    await web.TCPSite(runner, HOST, 0, ssl_context=tls).start()
    api.url = f"{'https' if tls else 'http'}://{HOST}:{runner.addresses[0][1]}"
    return api, runner
