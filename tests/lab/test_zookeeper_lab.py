"""The lab with ZooKeeper as its coordination service (``tenir lab up --coordination zookeeper``):
a three-member ensemble, one per site, holds Patroni's leader lock and the alert nodes'
memberships, elections and drain flags. The faults the etcd lab survives must be survived here
too: the site without the primary lost (``failover_cases.py``) here, a node's kill -9 and the
primary's site power cut in ``test_zookeeper_matrix.py``, judged by the chaos checkers.

The ZooKeeper lab (fixture ``zk_lab`` in ``conftest.py``) is shared with
``test_zookeeper_matrix.py``; its tests run after every etcd lab test.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest
from kazoo.client import KazooClient

from cluster.lab import netns
from cluster.lab.lab import Lab, LabError
from cluster.settings import coordination_endpoints
from cluster.status import gather
from cluster.topology import load_topology
from tests.lab.failover_cases import site_without_primary_lost_mid_campaign
from tests.lab.support import INVENTORY, REPO, LabHandle

pytestmark = pytest.mark.lab
TENIR = str(REPO / ".venv" / "bin" / "tenir")


def _zk(lab: LabHandle, cert: str = "paris-db") -> KazooClient:
    """A client over TLS presenting ``cert`` (a PostgreSQL member's may read Patroni's znodes)
    and logged in as the nodes' digest user (their znodes)."""
    from cluster.coordination.zk_security import zk_security
    from cluster.tls import TlsFiles
    from failover.drain import coordination_settings

    settings = dataclasses.replace(coordination_settings(lab.topo),
                                   tls=TlsFiles.in_dir(lab.layout.pki_dir, cert))
    client = KazooClient(hosts=",".join(coordination_endpoints(lab.topo)), timeout=5.0,
                         **zk_security(settings))
    client.start(timeout=10)
    return client


def test_three_zookeeper_members_on_three_sites_and_no_etcd(zk_lab: LabHandle) -> None:
    status = gather(zk_lab.topo, nodes=False)
    coord = status["coordination"]
    assert coord["backend"] == "zookeeper"
    assert coord["quorum"] is True
    assert len(coord["members"]) == 3 and all(m["healthy"] for m in coord["members"])
    assert {m["site"] for m in coord["members"]} == {"paris", "marseille", "witness"}
    assert sum(1 for m in coord["members"] if m["leader"]) == 1
    services = {s.name for h in zk_lab.lab.status() for s in h.services if s.running}
    assert "zookeeper" in services and "etcd" not in services


def test_the_cli_finds_the_running_labs_backend_without_being_told(zk_lab: LabHandle) -> None:
    out = subprocess.run([TENIR, "status", "--json"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    status = json.loads(out)
    assert status["coordination"]["backend"] == "zookeeper"
    assert [n["member"] for n in status["nodes"]] == [True] * 4


def test_patroni_and_the_alert_nodes_keep_their_state_in_zookeeper(zk_lab: LabHandle) -> None:
    primary = gather(zk_lab.topo, nodes=False)["postgres"]["primary"]
    client = _zk(zk_lab)
    try:
        leader, _ = client.get(f"/service/{zk_lab.topo.name}/leader")
        members = client.get_children(f"/tenir/{zk_lab.topo.name}/members")
    finally:
        client.stop()
        client.close()
    assert leader.decode() == primary
    assert sorted(members) == sorted(h.name for h in zk_lab.topo.hosts_running("alert_nodes"))


def test_up_with_the_other_backend_is_refused_and_changes_nothing(zk_lab: LabHandle) -> None:
    before = zk_lab.layout.load_state().machines
    etcd_lab = Lab(load_topology(INVENTORY), zk_lab.layout)
    with pytest.raises(LabError, match=r"runs with zookeeper .* not etcd: run 'tenir lab down'"):
        etcd_lab.up(timeout=30)
    assert zk_lab.layout.load_state().machines == before
    assert len(netns.list_namespaces()) == len(zk_lab.topo.hosts)


def test_losing_the_site_without_the_primary_mid_campaign(zk_lab: LabHandle) -> None:
    site_without_primary_lost_mid_campaign(zk_lab)


def test_a_node_cannot_touch_patronis_znodes_but_reaches_its_own(zk_lab: LabHandle) -> None:
    from kazoo.exceptions import NoAuthError

    client = _zk(zk_lab, cert="paris-node1")  # a node's certificate and the nodes' digest
    try:
        assert client.get_children(f"/tenir/{zk_lab.topo.name}/members")
        with pytest.raises(NoAuthError):
            client.set(f"/service/{zk_lab.topo.name}/leader", b"paris-node1")
    finally:
        client.stop()
        client.close()
