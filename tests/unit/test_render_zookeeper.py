"""The lab with ZooKeeper as its coordination service: the zookeeper role's templates, Patroni's
DCS section, and the specs ``tenir lab up --coordination zookeeper`` runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from cluster.lab.layout import Layout
from cluster.lab.services import ServiceSpec, specs_for
from cluster.render import render
from cluster.topology import Topology, TopologyError, load_topology, with_coordination
from tests.unit.test_render import patroni_values, zookeeper_values

pytestmark = pytest.mark.unit


def _zoo_cfg(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines()
             if line.strip() and not line.startswith("#"))
    return {k: v for k, v in pairs}


def test_zoo_cfg_lists_three_members_and_allows_the_probes() -> None:
    conf = _zoo_cfg(render("zookeeper", "zoo.cfg.j2", zookeeper_values()))
    assert [conf[f"server.{i}"] for i in (1, 2, 3)] == [
        "10.213.0.11:2888:3888", "10.213.0.21:2888:3888", "10.213.0.31:2888:3888"]
    assert conf["clientPort"] == "2181"
    assert set(conf["4lw.commands.whitelist"].split(",")) >= {"srvr", "envi"}
    assert conf["admin.enableServer"] == "false"
    # Sessions of the alert nodes (5 s) and of Patroni (ttl 20 s) must fit the bounds, or
    # ZooKeeper would silently negotiate another timeout.
    assert int(conf["minSessionTimeout"]) <= 5000 and int(conf["maxSessionTimeout"]) >= 20000
    assert int(conf["minSessionTimeout"]) >= 2 * int(conf["tickTime"])


def test_myid_is_the_members_id() -> None:
    assert render("zookeeper", "myid.j2", {"zookeeper_myid": 2}) == "2\n"


def test_patroni_uses_the_dcs_it_is_given() -> None:
    hosts = ["10.213.0.11:2181", "10.213.0.21:2181", "10.213.0.31:2181"]
    conf = yaml.safe_load(render("patroni", "patroni.yml.j2", {
        **patroni_values(), "patroni_dcs": "zookeeper", "patroni_dcs_hosts": hosts}))
    assert conf["zookeeper"] == {"hosts": hosts}
    assert "etcd3" not in conf


def test_patroni_with_an_unknown_dcs_is_an_error_that_names_it() -> None:
    with pytest.raises(jinja2.UndefinedError, match="patroni_dcs_must_be_etcd3_or_zookeeper"):
        render("patroni", "patroni.yml.j2", {**patroni_values(), "patroni_dcs": "consul"})


# --- the lab's specs with ZooKeeper -------------------------------------------------------------
@pytest.fixture
def zk_topology(lab_topology: Topology) -> Topology:
    return with_coordination(lab_topology, "zookeeper")


@pytest.fixture
def zk_specs(zk_topology: Topology, lab_secrets: dict[str, str], tmp_path: Path
             ) -> list[ServiceSpec]:
    return specs_for(zk_topology, Layout(tmp_path), lab_secrets)


def test_with_coordination_keeps_the_rest_and_checks_placement(lab_topology: Topology) -> None:
    zk = with_coordination(lab_topology, "zookeeper")
    assert (zk.coordination, zk.vars["tenir_coordination"]) == ("zookeeper", "zookeeper")
    assert zk.hosts == lab_topology.hosts and zk.timings == lab_topology.timings
    assert with_coordination(lab_topology, "etcd") is lab_topology
    with pytest.raises(TopologyError, match="--coordination: must be one of"):
        with_coordination(lab_topology, "consul")


def test_only_zookeeper_runs_as_the_coordination_service(zk_specs: list[ServiceSpec]) -> None:
    services = [(s.service, s.host.name) for s in zk_specs]
    assert services[:3] == [("zookeeper", "paris-db"), ("zookeeper", "marseille-db"),
                            ("zookeeper", "witness-quorum")]
    assert not any(s == "etcd" for s, _ in services)


def test_each_member_gets_its_own_myid_and_data_dir(zk_specs: list[ServiceSpec],
                                                    tmp_path: Path) -> None:
    zk = [s for s in zk_specs if s.service == "zookeeper"]
    for myid, spec in enumerate(zk, start=1):
        data = tmp_path / "hosts" / spec.host.name / "zookeeper"
        assert _zoo_cfg(spec.config_text)["dataDir"] == str(data)
        assert spec.extra_files == ((data / "myid", f"{myid}\n"),)
        assert spec.argv[spec.argv.index("setpriv") + 1] == "--reuid=zookeeper"
        assert spec.argv[-2:] == ["org.apache.zookeeper.server.quorum.QuorumPeerMain",
                                  str(spec.config)]
    # myid is part of the configuration: changing it alone restarts the member.
    spec = zk[0]
    path, _ = spec.extra_files[0]
    assert dataclasses.replace(spec, extra_files=((path, "9\n"),)).config_sha != spec.config_sha


def test_patroni_and_nodes_point_at_zookeeper(zk_specs: list[ServiceSpec]) -> None:
    for spec in (s for s in zk_specs if s.service == "patroni"):
        conf = yaml.safe_load(spec.config_text)
        assert conf["zookeeper"]["hosts"] == [
            "10.213.0.11:2181", "10.213.0.21:2181", "10.213.0.31:2181"]
        assert "etcd3" not in conf
    for spec in (s for s in zk_specs if s.service == "node"):
        coord = yaml.safe_load(spec.config_text)["coordination"]
        assert coord["backend"] == "zookeeper"
        # The member of the node's own site comes first; the witness always last.
        own = "10.213.0.11:2181" if spec.host.site == "paris" else "10.213.0.21:2181"
        assert coord["endpoints"][0] == own
        assert coord["endpoints"][2] == "10.213.0.31:2181"
        assert all(e.endswith(":2181") for e in coord["endpoints"])
        assert yaml.safe_load(spec.config_text)["patroni_urls"] == [
            "http://10.213.0.11:8008", "http://10.213.0.21:8008"]


def test_myid_follows_the_zookeeper_groups_order(lab_data: dict[str, Any], tmp_path: Path,
                                                lab_secrets: dict[str, str]) -> None:
    group = lab_data["all"]["children"]["zookeeper"]["hosts"]
    lab_data["all"]["children"]["zookeeper"]["hosts"] = dict(reversed(list(group.items())))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump(lab_data, sort_keys=False))
    topo = with_coordination(load_topology(inventory), "zookeeper")
    specs = [s for s in specs_for(topo, Layout(tmp_path / "lab"), lab_secrets)
             if s.service == "zookeeper"]
    myids = {s.host.name: s.extra_files[0][1].strip() for s in specs}
    assert myids == {"witness-quorum": "1", "marseille-db": "2", "paris-db": "3"}
    conf = _zoo_cfg(specs[0].config_text)
    assert conf["server.1"].startswith("10.213.0.31:")  # the same numbering in every zoo.cfg
