"""ZooKeeper as the zookeeper role runs it, on a throwaway server: a TLS-only client port that
wants a certificate of the cluster's CA; the alert nodes' znodes under a digest ACL of their
user (kazoo through the coordinator, as a node opens it), Patroni's under x509 ACLs naming the
PostgreSQL members' certificates (what Patroni's ``set_acls`` writes): a node's identity cannot
write Patroni's znodes, and a member's cannot write the nodes'."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import make_acl

from cluster import zookeeper_probe
from cluster.coordination.base import CoordinationSettings, CoordinationUnavailable
from cluster.coordination.factory import open_coordinator
from cluster.tls import TlsFiles
from tests.coordination.servers import HOST, ZooKeeperServer, running
from tests.tls_kit import TestPki

pytestmark = pytest.mark.integration

DIGEST = "tenir-nodes:zk-nodes-password-0123"


@pytest.fixture(scope="module")
def server(pki: TestPki) -> Iterator[ZooKeeperServer]:
    with running(ZooKeeperServer(tls=pki.files("zk-member"))) as s:
        yield s


def settings(server: ZooKeeperServer, files: TlsFiles | None, digest: str | None = DIGEST
             ) -> CoordinationSettings:
    return CoordinationSettings(endpoints=(server.endpoint,), namespace="/tenir/c1/", ttl=4.0,
                                retry_timeout=1.5, tls=files, zk_digest=digest)


def patroni_client(server: ZooKeeperServer, files: TlsFiles) -> KazooClient:
    """As Patroni connects with use_ssl and set_acls {CN=paris-db: [ALL]}."""
    assert files.cert is not None and files.key is not None
    client = KazooClient(hosts=server.endpoint, use_ssl=True, ca=str(files.ca),
                         certfile=str(files.cert), keyfile=str(files.key),
                         default_acl=[make_acl("x509", "CN=paris-db", all=True)])
    client.start(timeout=10)
    return client


@pytest.mark.asyncio
async def test_nodes_znodes_are_theirs_and_patronis_are_the_members(
        server: ZooKeeperServer, pki: TestPki) -> None:
    patroni = patroni_client(server, pki.files("paris-db"))
    try:
        patroni.ensure_path("/service/c1")
        patroni.create("/service/c1/leader", b"paris-db")
        node = await open_coordinator("zookeeper", settings(server, pki.files("paris-node1")))
        try:
            assert await node.compare_and_set("drain/paris", b"1", None)
            # Patroni's identity can neither read nor write the nodes' znodes
            with pytest.raises(NoAuthError):
                patroni.get("/tenir/c1/drain/paris")
            with pytest.raises(NoAuthError):
                patroni.set("/tenir/c1/drain/paris", b"0")
        finally:
            await node.close()
        # a node's certificate and digest cannot write Patroni's leader znode
        files = pki.files("paris-node1")
        assert files.cert is not None and files.key is not None
        intruder = KazooClient(hosts=server.endpoint, use_ssl=True, ca=str(files.ca),
                               certfile=str(files.cert), keyfile=str(files.key),
                               auth_data=[("digest", DIGEST)])
        intruder.start(timeout=10)
        try:
            acl, _ = intruder.get_acls("/tenir/c1/drain/paris")
            assert [(a.id.scheme, a.id.id.split(":")[0]) for a in acl] == [
                ("digest", "tenir-nodes")]
            with pytest.raises(NoAuthError):
                intruder.set("/service/c1/leader", b"paris-node1")
            with pytest.raises(NoAuthError):
                intruder.delete("/service/c1/leader")
        finally:
            intruder.stop()
            intruder.close()
        assert patroni.get("/service/c1/leader")[0] == b"paris-db"
    finally:
        patroni.stop()
        patroni.close()


@pytest.mark.asyncio
async def test_a_client_without_a_certificate_gets_no_session(
        server: ZooKeeperServer, pki: TestPki) -> None:
    with pytest.raises(CoordinationUnavailable):
        await open_coordinator("zookeeper", settings(server, pki.ca_only()))


def test_the_probe_reads_srvr_over_tls_and_nothing_answers_in_clear(
        server: ZooKeeperServer, pki: TestPki) -> None:
    context = pki.files("tenir-operator", ()).client_context()
    [health] = zookeeper_probe.probe_members([("zk", HOST)], server.port, tls=context)
    assert health.healthy and health.error is None
    [plain] = zookeeper_probe.probe_members([("zk", HOST)], server.port, timeout=1.0)
    assert not plain.healthy
    with pytest.raises(ssl.SSLError):  # a client certificate is required
        zookeeper_probe.four_letter_word(HOST, server.port, "srvr", 2.0,
                                         pki.ca_only().client_context())
