"""The health probes of ``tenir status`` and ``lab up`` against the real servers: etcd's JSON
gateway and ZooKeeper's four-letter words."""

from __future__ import annotations

import time

import pytest

from cluster import etcd_probe, zookeeper_probe
from cluster.member_probe import has_quorum
from tests.coordination.servers import HOST, EtcdServer, ZooKeeperServer, free_port

pytestmark = pytest.mark.integration


def test_a_serving_zookeeper_is_healthy(zookeeper_server: ZooKeeperServer) -> None:
    zookeeper_server.ensure_running()
    # 'ruok' answers as soon as the process listens; 'srvr' only once it serves requests.
    deadline = time.monotonic() + 15
    while True:
        [health] = zookeeper_probe.probe_members([("zk", HOST)], zookeeper_server.port)
        if health.healthy or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (health.healthy, health.member_id, health.error) == (True, "1", None)
    assert not health.leader  # a standalone server leads no ensemble


def test_a_closed_zookeeper_port_is_down_and_says_why() -> None:
    [health] = zookeeper_probe.probe_members([("zk", HOST)], free_port(), timeout=0.5)
    assert not health.healthy and not health.leader
    assert health.error and "refused" in health.error.lower()


def test_a_frozen_zookeeper_is_down_within_the_timeout(zookeeper_server: ZooKeeperServer) -> None:
    zookeeper_server.ensure_running()
    zookeeper_server.freeze()
    try:
        [health] = zookeeper_probe.probe_members([("zk", HOST)], zookeeper_server.port,
                                                 timeout=0.5)
    finally:
        zookeeper_server.thaw()
    assert not health.healthy and health.error


def test_a_serving_etcd_is_healthy_and_leads(etcd_server: EtcdServer) -> None:
    etcd_server.ensure_running()
    [health] = etcd_probe.probe_members([("e", HOST)], etcd_server.port)
    assert health.healthy and health.leader and health.member_id
    assert has_quorum([health])
