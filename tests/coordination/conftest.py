"""Real etcd and ZooKeeper servers for the coordination contract tests (started once per
session, only for the backends the selected tests use), and coordinators opened on them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Literal

import pytest
import pytest_asyncio

from cluster.coordination.base import CoordinationSettings, Coordinator
from cluster.coordination.factory import open_coordinator
from tests.coordination.servers import EtcdServer, Proxy, Server, ZooKeeperServer, running
from tests.tls_kit import TestPki

TTL = 3.0
RETRY_TIMEOUT = 1.0


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    with running(EtcdServer()) as server:
        yield server


@pytest.fixture(scope="session")
def zookeeper_server() -> Iterator[ZooKeeperServer]:
    with running(ZooKeeperServer()) as server:
        yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A throwaway cluster CA (the TLS tests' servers and clients)."""
    return TestPki(tmp_path_factory.mktemp("pki"))


@dataclass
class Backend:
    """One backend under test: its server and a factory of coordinators on it, each in a
    namespace of its own test; every coordinator and proxy is closed after the test."""

    name: Literal["etcd", "zookeeper"]
    server: Server
    namespace: str = field(default_factory=lambda: f"/tenir/test-{uuid.uuid4().hex[:8]}/")
    opened: list[Coordinator] = field(default_factory=list)
    proxies: list[Proxy] = field(default_factory=list)

    def settings(self, endpoint: str | None = None) -> CoordinationSettings:
        return CoordinationSettings(endpoints=(endpoint or self.server.endpoint,),
                                    namespace=self.namespace, ttl=TTL,
                                    retry_timeout=RETRY_TIMEOUT)

    async def open(self, endpoint: str | None = None) -> Coordinator:
        coordinator = await open_coordinator(self.name, self.settings(endpoint))
        self.opened.append(coordinator)
        return coordinator

    async def proxy(self) -> Proxy:
        """A relay to the server, to cut one coordinator off (see Proxy)."""
        proxy = Proxy(self.server.port)
        self.proxies.append(proxy)
        await proxy.heal()
        return proxy


@pytest_asyncio.fixture(params=["etcd", "zookeeper"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    server: Server = request.getfixturevalue(f"{request.param}_server")
    server.ensure_running()  # a previous test may have failed with it frozen or stopped
    b = Backend(request.param, server)
    try:
        yield b
    finally:
        server.ensure_running()
        for proxy in b.proxies:
            await proxy.heal()  # let cut-off coordinators say goodbye
        for coordinator in reversed(b.opened):
            await coordinator.close()
        for proxy in b.proxies:
            await proxy.close()
