"""The watchdog's PostgreSQL view on a real HTTP exchange: a small aiohttp server on 127.0.0.1
answers ``GET /cluster`` the way Patroni 4 does; a closed port, an error status, a body that is
not a cluster view and a server too slow all give an unknown state, within the timeout."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from failover.pg_state import NOT_CONFIGURED, PatroniRestView

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

# What Patroni 4.1 answers to GET /cluster with synchronous_mode on (trimmed of LSN fields).
PATRONI_CLUSTER: dict[str, Any] = {
    "members": [
        {"name": "marseille-db", "role": "sync_standby", "state": "streaming",
         "api_url": "http://10.213.0.21:8008/patroni", "host": "10.213.0.21", "port": 5432,
         "timeline": 3, "lag": 0},
        {"name": "paris-db", "role": "leader", "state": "running",
         "api_url": "http://10.213.0.11:8008/patroni", "host": "10.213.0.11", "port": 5432,
         "timeline": 3},
    ],
    "scope": "tenir-lab",
}
NO_LEADER: dict[str, Any] = {
    "members": [{"name": "marseille-db", "role": "replica", "state": "running",
                 "api_url": "http://10.213.0.21:8008/patroni", "host": "10.213.0.21",
                 "port": 5432, "timeline": 3, "lag": "unknown"}],
    "scope": "tenir-lab",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Serve = Callable[[Handler], Awaitable[str]]


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a server on 127.0.0.1 answering /cluster with ``handler``; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_get("/cluster", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.1)  # do not wait for slow handlers
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def answering(body: Any, status: int = 200, delay_s: float = 0.0) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if delay_s:
            await asyncio.sleep(delay_s)
        if isinstance(body, str):
            return web.Response(text=body, status=status)
        return web.json_response(body, status=status)
    return handler


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_patroni_cluster_view(serve: Serve) -> None:
    url = await serve(answering(PATRONI_CLUSTER))
    state = await PatroniRestView([url + "/"]).read()
    assert state.known and state.answered_by == url
    assert (state.primary, state.sync_standby) == ("paris-db", "marseille-db")
    assert state.members == ("marseille-db", "paris-db")
    assert state.describe() == "PostgreSQL primary paris-db, sync standby marseille-db"


async def test_the_primarys_site_tag_names_its_site(serve: Serve) -> None:
    tagged = {**PATRONI_CLUSTER, "members": [
        {**m, "tags": {"site": "paris" if m["name"] == "paris-db" else "marseille"}}
        for m in PATRONI_CLUSTER["members"]]}
    state = await PatroniRestView([await serve(answering(tagged))]).read()
    assert state.primary_site == "paris"
    assert state.describe() == "PostgreSQL primary paris-db (paris), sync standby marseille-db"
    untagged = await PatroniRestView([await serve(answering(PATRONI_CLUSTER))]).read()
    assert untagged.primary_site is None  # no guess from the member's name


async def test_no_leader_key_is_no_primary(serve: Serve) -> None:
    state = await PatroniRestView([await serve(answering(NO_LEADER))]).read()
    assert state.known and state.no_primary
    assert state.describe() == "PostgreSQL has no primary (failover in progress)"


async def test_a_closed_port_is_unknown() -> None:
    url = closed_port()
    state = await PatroniRestView([url]).read()
    assert not state.known and not state.no_primary
    assert state.unknown_because == "no Patroni answered"
    [error] = state.errors
    assert error.startswith(f"{url}: ClientConnectorError")


async def test_the_first_patroni_that_answers_is_taken(serve: Serve) -> None:
    slow = await serve(answering(NO_LEADER, delay_s=0.5))
    fast = await serve(answering(PATRONI_CLUSTER))
    state = await PatroniRestView([closed_port(), slow, fast], timeout_s=1.0).read()
    assert (state.answered_by, state.primary) == (fast, "paris-db")


@pytest.mark.parametrize(("body", "status", "said"), [
    (PATRONI_CLUSTER, 503, "HTTP 503"),
    ("<html>proxy error</html>", 200, "JSONDecodeError"),
    ({"members": "none"}, 200, "ValueError: not a Patroni /cluster answer"),
    ([1, 2], 200, "ValueError: not a Patroni /cluster answer"),
], ids=["error-status", "not-json", "members-not-a-list", "not-an-object"])
async def test_an_answer_that_is_not_a_cluster_view_is_unknown(
        serve: Serve, body: Any, status: int, said: str) -> None:
    url = await serve(answering(body, status))
    state = await PatroniRestView([url]).read()
    assert not state.known
    assert state.errors[0].startswith(f"{url}: {said}")


async def test_a_patroni_too_slow_is_unknown_within_the_timeout(serve: Serve) -> None:
    url = await serve(answering(PATRONI_CLUSTER, delay_s=5.0))
    began = time.monotonic()
    state = await PatroniRestView([url, closed_port()], timeout_s=0.3).read()
    assert time.monotonic() - began < 1.5
    assert not state.known
    assert state.errors[0] == f"{url}: no answer within 0.3 s"


async def test_no_url_is_not_configured() -> None:
    assert await PatroniRestView([]).read() == NOT_CONFIGURED
