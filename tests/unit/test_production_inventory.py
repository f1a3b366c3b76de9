"""The production example inventory loads, passes every check, and renders a configuration for
each service with either coordination backend (what the playbooks will apply)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cluster.lab.layout import Layout
from cluster.lab.services import specs_for
from cluster.topology import load_topology, with_coordination

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "inventories" / "production-example"


def test_it_loads_with_two_datacenters_and_a_witness() -> None:
    topo = load_topology(EXAMPLE)
    assert [s.name for s in topo.datacenter_sites] == ["paris", "marseille"]
    assert topo.sites["lille"].kind == "witness"
    assert topo.lab_network is None  # not a lab: `tenir lab up` refuses it
    assert (topo.timings.ttl, topo.timings.loop_wait, topo.timings.retry_timeout) == (20, 3, 5)


@pytest.mark.parametrize("backend", ["etcd", "zookeeper"])
def test_every_service_renders(backend: str, lab_secrets: dict[str, str], tmp_path: Path) -> None:
    topo = with_coordination(load_topology(EXAMPLE), backend)
    specs = specs_for(topo, Layout(tmp_path), lab_secrets)
    services = {s.service for s in specs}
    assert services == {backend, "patroni", "haproxy", "carriers", "node"}
    for spec in specs:
        if spec.config.name.endswith(".yml"):
            yaml.safe_load(spec.config_text)  # valid YAML
    patroni = yaml.safe_load(next(s for s in specs if s.service == "patroni").config_text)
    assert "host all all 192.0.2.0/24 scram-sha-256" in patroni["postgresql"]["pg_hba"]
    node = yaml.safe_load(next(s for s in specs if s.host.name == "marseille-alert1").config_text)
    port = 2181 if backend == "zookeeper" else 2379
    assert node["coordination"]["endpoints"][0] == f"192.0.2.112:{port}"  # its own site first
    assert node["coordination"]["ttl"] == 6
    assert node["patroni_urls"] == ["http://192.0.2.11:8008", "http://192.0.2.111:8008"]
