"""The inventory loader: the shipped lab inventory loads into typed objects, and every bad
inventory is refused with a TopologyError naming the exact entry at fault."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.topology import (
    PATRONI_MIN_TTL,
    Host,
    Site,
    Timings,
    Topology,
    TopologyError,
    load_topology,
    parse_topology,
)

pytestmark = pytest.mark.unit

SITES = "all.children.sites.children"

Inventory = dict[str, Any]
Mutation = Callable[[Inventory], None]


# --- helpers to reach into the raw inventory ------------------------------------------------------
def _vars(d: Inventory) -> dict[str, Any]:
    result: dict[str, Any] = d["all"]["vars"]
    return result


def _children(d: Inventory) -> dict[str, Any]:
    result: dict[str, Any] = d["all"]["children"]
    return result


def _site(d: Inventory, site: str) -> dict[str, Any]:
    result: dict[str, Any] = _children(d)["sites"]["children"][site]
    return result


def _site_hosts(d: Inventory, site: str) -> dict[str, Any]:
    result: dict[str, Any] = _site(d, site)["hosts"]
    return result


def _service_hosts(d: Inventory, service: str) -> dict[str, Any]:
    result: dict[str, Any] = _children(d)[service]["hosts"]
    return result


# --- the shipped lab inventory --------------------------------------------------------------------
def test_lab_inventory_loads_three_sites(lab_topology: Topology) -> None:
    assert list(lab_topology.sites) == ["paris", "marseille", "witness"]
    assert lab_topology.sites["paris"] == Site(
        "paris", "datacenter", ("paris-db", "paris-node1", "paris-node2", "paris-carriers"))
    assert lab_topology.sites["marseille"] == Site(
        "marseille", "datacenter",
        ("marseille-db", "marseille-node1", "marseille-node2", "marseille-carriers"))
    assert lab_topology.sites["witness"] == Site("witness", "witness", ("witness-quorum",))
    assert [s.name for s in lab_topology.datacenter_sites] == ["paris", "marseille"]
    assert not lab_topology.sites["witness"].is_datacenter


def test_lab_inventory_hosts_addresses_and_services(lab_topology: Topology) -> None:
    expected = {
        "paris-db": ("paris", "10.213.0.11", {"etcd", "zookeeper", "postgres", "haproxy"}),
        "marseille-db": ("marseille", "10.213.0.21", {"etcd", "zookeeper", "postgres", "haproxy"}),
        "witness-quorum": ("witness", "10.213.0.31", {"etcd", "zookeeper", "evidence_witness"}),
        "paris-node1": ("paris", "10.213.0.12", {"alert_nodes"}),
        "paris-node2": ("paris", "10.213.0.13", {"alert_nodes"}),
        "paris-carriers": ("paris", "10.213.0.14", {"carriers"}),
        "marseille-node1": ("marseille", "10.213.0.22", {"alert_nodes"}),
        "marseille-node2": ("marseille", "10.213.0.23", {"alert_nodes"}),
        "marseille-carriers": ("marseille", "10.213.0.24", {"carriers"}),
    }
    assert set(lab_topology.hosts) == set(expected)
    for name, (site, address, services) in expected.items():
        host = lab_topology.hosts[name]
        assert isinstance(host, Host)
        assert host.name == name
        assert host.site == site
        assert isinstance(host.address, ipaddress.IPv4Address)
        assert host.address == ipaddress.IPv4Address(address)
        assert host.services == frozenset(services)
        assert host.vars["ansible_host"] == address
        # Site vars are inherited by the site's hosts.
        assert host.vars["tenir_site_kind"] == lab_topology.sites[site].kind


def test_lab_inventory_service_queries(lab_topology: Topology) -> None:
    def names(service: str) -> set[str]:
        return {h.name for h in lab_topology.hosts_running(service)}

    assert names("etcd") == {"paris-db", "marseille-db", "witness-quorum"}
    assert names("zookeeper") == names("etcd")
    assert names("postgres") == {"paris-db", "marseille-db"}
    assert names("haproxy") == {"paris-db", "marseille-db"}
    assert names("alert_nodes") == {"paris-node1", "paris-node2", "marseille-node1",
                                    "marseille-node2"}
    assert names("carriers") == {"paris-carriers", "marseille-carriers"}
    assert lab_topology.postgres_host_of_site("paris").name == "paris-db"
    assert lab_topology.postgres_host_of_site("marseille").name == "marseille-db"
    assert [h.name for h in lab_topology.site_hosts("witness")] == ["witness-quorum"]


def _carriers_on_witness(d: Inventory) -> None:
    _service_hosts(d, "carriers")["witness-quorum"] = None


def _two_carriers_in_site(d: Inventory) -> None:
    _site_hosts(d, "paris")["paris-carriers2"] = {"ansible_host": "10.213.0.15"}
    _service_hosts(d, "carriers")["paris-carriers2"] = None


@pytest.mark.parametrize(("mutate", "entry", "problem"), [
    pytest.param(_carriers_on_witness, "all.children.carriers.hosts.witness-quorum",
                 "only in datacenter sites", id="carriers-on-witness"),
    pytest.param(_two_carriers_in_site, "all.children.carriers.hosts.paris-carriers2",
                 "more than one carriers host", id="two-carriers-in-site"),
])
def test_bad_node_placement_is_refused(lab_data: Inventory, mutate: Mutation, entry: str,
                                       problem: str) -> None:
    mutate(lab_data)
    with pytest.raises(TopologyError) as caught:
        parse_topology(lab_data, "inv.yml")
    assert caught.value.entry == entry
    assert problem in caught.value.problem


def test_lab_inventory_cluster_vars(lab_topology: Topology) -> None:
    assert lab_topology.name == "tenir-lab"
    assert lab_topology.coordination == "etcd"
    assert lab_topology.timings == Timings(ttl=20, loop_wait=2, retry_timeout=4)
    assert lab_topology.lab_network == ipaddress.IPv4Network("10.213.0.0/24")
    assert lab_topology.lab_bridge_address == ipaddress.IPv4Address("10.213.0.1")


def test_lab_inventory_timings_respect_patroni_rule(lab_topology: Topology) -> None:
    t = lab_topology.timings
    assert t.ttl >= PATRONI_MIN_TTL
    assert t.loop_wait + 2 * t.retry_timeout <= t.ttl


def test_load_accepts_directory_or_file(lab_inventory_path: Path) -> None:
    from_dir = load_topology(lab_inventory_path.parent)
    from_file = load_topology(lab_inventory_path)
    assert from_dir == from_file
    assert from_file.source == str(lab_inventory_path)


def test_parse_matches_load(lab_data: Inventory, lab_inventory_path: Path) -> None:
    assert parse_topology(lab_data, str(lab_inventory_path)) == load_topology(lab_inventory_path)


def test_parse_does_not_mutate_its_input(lab_data: Inventory) -> None:
    before = copy.deepcopy(lab_data)
    parse_topology(lab_data)
    assert lab_data == before


def test_error_carries_source_entry_and_problem() -> None:
    err = TopologyError("inv.yml", "all.vars.patroni_ttl", "is too small")
    assert isinstance(err, ValueError)
    assert err.source == "inv.yml"
    assert err.entry == "all.vars.patroni_ttl"
    assert err.problem == "is too small"
    assert str(err) == "inv.yml: all.vars.patroni_ttl: is too small"


# --- bad inventories ------------------------------------------------------------------------------
def _drop_sites(d: Inventory) -> None:
    del _children(d)["sites"]


def _no_site(d: Inventory) -> None:
    _children(d)["sites"]["children"] = {}


def _unknown_kind(d: Inventory) -> None:
    _site(d, "paris")["vars"]["tenir_site_kind"] = "colocation"


def _missing_kind(d: Inventory) -> None:
    del _site(d, "marseille")["vars"]


def _site_without_hosts(d: Inventory) -> None:
    _site(d, "witness")["hosts"] = {}


def _hostname_address(d: Inventory) -> None:
    _site_hosts(d, "paris")["paris-db"]["ansible_host"] = "paris-db.example.net"


def _ipv6_address(d: Inventory) -> None:
    _site_hosts(d, "marseille")["marseille-db"]["ansible_host"] = "fd00:213::21"


def _missing_address(d: Inventory) -> None:
    del _site_hosts(d, "witness")["witness-quorum"]["ansible_host"]


def _duplicate_address(d: Inventory) -> None:
    _site_hosts(d, "marseille")["marseille-db"]["ansible_host"] = "10.213.0.11"


def _bridge_address_reused(d: Inventory) -> None:
    _site_hosts(d, "witness")["witness-quorum"]["ansible_host"] = "10.213.0.1"


def _host_in_two_sites(d: Inventory) -> None:
    _site_hosts(d, "witness")["paris-db"] = {"ansible_host": "10.213.0.32"}


def _address_outside_network(d: Inventory) -> None:
    _site_hosts(d, "witness")["witness-quorum"]["ansible_host"] = "10.214.0.31"


def _public_lab_network(d: Inventory) -> None:
    _vars(d)["tenir_lab_network"] = "8.8.8.0/24"


def _bridge_outside_network(d: Inventory) -> None:
    _vars(d)["tenir_lab_bridge_address"] = "10.99.0.1"


def _service_names_unknown_host(d: Inventory) -> None:
    _service_hosts(d, "postgres")["lyon-db"] = None


def _unknown_group(d: Inventory) -> None:
    _children(d)["monitoring"] = {"hosts": {"paris-db": None}}


def _two_etcd_members(d: Inventory) -> None:
    del _service_hosts(d, "etcd")["witness-quorum"]


def _etcd_two_on_one_site(d: Inventory) -> None:
    _site_hosts(d, "paris")["paris-etcd"] = {"ansible_host": "10.213.0.15"}
    etcd = _service_hosts(d, "etcd")
    del etcd["witness-quorum"]
    etcd["paris-etcd"] = None


def _zookeeper_without_members(d: Inventory) -> None:
    _vars(d)["tenir_coordination"] = "zookeeper"
    del d["all"]["children"]["zookeeper"]


def _postgres_on_witness(d: Inventory) -> None:
    _service_hosts(d, "postgres")["witness-quorum"] = None


def _two_postgres_in_site(d: Inventory) -> None:
    _site_hosts(d, "paris")["paris-db2"] = {"ansible_host": "10.213.0.15"}
    _service_hosts(d, "postgres")["paris-db2"] = None


def _no_postgres_in_site(d: Inventory) -> None:
    del _service_hosts(d, "postgres")["marseille-db"]


def _no_haproxy_in_site(d: Inventory) -> None:
    del _service_hosts(d, "haproxy")["marseille-db"]


def _one_datacenter(d: Inventory) -> None:
    _site(d, "marseille")["vars"]["tenir_site_kind"] = "witness"


def _three_datacenters(d: Inventory) -> None:
    _site(d, "witness")["vars"]["tenir_site_kind"] = "datacenter"


def _set_var(name: str, value: Any) -> Mutation:
    def mutate(d: Inventory) -> None:
        _vars(d)[name] = value

    return mutate


def _set_timings(ttl: Any, loop_wait: Any, retry_timeout: Any) -> Mutation:
    def mutate(d: Inventory) -> None:
        _vars(d).update(
            patroni_ttl=ttl, patroni_loop_wait=loop_wait, patroni_retry_timeout=retry_timeout
        )

    return mutate


def _drop_var(name: str) -> Mutation:
    def mutate(d: Inventory) -> None:
        del _vars(d)[name]

    return mutate


BAD_INVENTORIES = [
    # structure and sites
    pytest.param(_drop_sites, "all.children.sites", "is missing", id="missing-sites-group"),
    pytest.param(_no_site, SITES, "no site", id="sites-group-empty"),
    pytest.param(_unknown_kind, f"{SITES}.paris.vars.tenir_site_kind", "'colocation'",
                 id="unknown-site-kind"),
    pytest.param(_missing_kind, f"{SITES}.marseille.vars.tenir_site_kind", "None",
                 id="site-kind-missing"),
    pytest.param(_site_without_hosts, f"{SITES}.witness.hosts", "no host", id="site-without-host"),
    # host addresses
    pytest.param(_hostname_address, f"{SITES}.paris.hosts.paris-db.ansible_host",
                 "'paris-db.example.net' is not an IPv4 address", id="ansible-host-not-ipv4"),
    pytest.param(_ipv6_address, f"{SITES}.marseille.hosts.marseille-db.ansible_host",
                 "is not an IPv4 address", id="ansible-host-ipv6"),
    pytest.param(_missing_address, f"{SITES}.witness.hosts.witness-quorum.ansible_host",
                 "is not an IPv4 address", id="ansible-host-missing"),
    pytest.param(_duplicate_address, f"{SITES}.marseille.hosts.marseille-db.ansible_host",
                 f"already used by {SITES}.paris.hosts.paris-db", id="duplicate-address"),
    pytest.param(_bridge_address_reused, f"{SITES}.witness.hosts.witness-quorum.ansible_host",
                 "already used by all.vars.tenir_lab_bridge_address",
                 id="address-is-bridge-address"),
    pytest.param(_host_in_two_sites, f"{SITES}.witness.hosts.paris-db",
                 "already used in site 'paris'", id="same-host-in-two-sites"),
    pytest.param(_address_outside_network, f"{SITES}.witness.hosts.witness-quorum.ansible_host",
                 "outside tenir_lab_network 10.213.0.0/24", id="address-outside-lab-network"),
    pytest.param(_public_lab_network, "all.vars.tenir_lab_network", "not a private range",
                 id="lab-network-not-private"),
    pytest.param(_bridge_outside_network, "all.vars.tenir_lab_bridge_address",
                 "outside 10.213.0.0/24", id="bridge-outside-lab-network"),
    # groups
    pytest.param(_service_names_unknown_host, "all.children.postgres.hosts.lyon-db",
                 "not a host of any site", id="service-names-unknown-host"),
    pytest.param(_unknown_group, "all.children.monitoring", "unknown group",
                 id="unknown-top-level-group"),
    # placement
    pytest.param(_two_etcd_members, "all.children.etcd.hosts", "found 2",
                 id="only-two-etcd-members"),
    pytest.param(_etcd_two_on_one_site, "all.children.etcd.hosts",
                 "['marseille', 'paris', 'paris']", id="two-etcd-members-on-one-site"),
    pytest.param(_zookeeper_without_members, "all.children.zookeeper.hosts", "found 0",
                 id="zookeeper-coordination-without-members"),
    pytest.param(_postgres_on_witness, "all.children.postgres.hosts.witness-quorum",
                 "witness site 'witness'", id="postgres-on-witness"),
    pytest.param(_two_postgres_in_site, "all.children.postgres.hosts.paris-db2",
                 "datacenter site 'paris' needs exactly one postgres host, found 2",
                 id="datacenter-with-two-postgres"),
    pytest.param(_no_postgres_in_site, "all.children.postgres.hosts",
                 "datacenter site 'marseille' needs exactly one postgres host, found 0",
                 id="datacenter-without-postgres"),
    pytest.param(_no_haproxy_in_site, "all.children.haproxy.hosts",
                 "datacenter site 'marseille' has no haproxy host",
                 id="datacenter-without-haproxy"),
    pytest.param(_one_datacenter, SITES, "exactly two datacenter sites, found 1",
                 id="one-datacenter-only"),
    pytest.param(_three_datacenters, SITES, "exactly two datacenter sites, found 3",
                 id="three-datacenters"),
    # timings
    pytest.param(_set_timings(19, 2, 4), "all.vars.patroni_ttl", "below 20", id="ttl-below-20"),
    pytest.param(_set_timings(20, 10, 6), "all.vars.patroni_ttl",
                 "10 + 2*6 = 22 exceeds ttl 20", id="loop-wait-plus-retries-exceed-ttl"),
    pytest.param(_set_timings(30, 10, 11), "all.vars.patroni_ttl", "exceeds ttl 30",
                 id="retries-exceed-ttl-30"),
    pytest.param(_set_timings(20, "2", 4), "all.vars.patroni_loop_wait", "'2'",
                 id="loop-wait-is-string"),
    pytest.param(_set_timings(20, 2, 4.5), "all.vars.patroni_retry_timeout", "4.5",
                 id="retry-timeout-is-float"),
    pytest.param(_set_timings(True, 2, 4), "all.vars.patroni_ttl", "True", id="ttl-is-bool"),
    pytest.param(_set_timings(20, 0, 4), "all.vars.patroni_loop_wait", "must be positive",
                 id="loop-wait-zero"),
    pytest.param(_drop_var("patroni_retry_timeout"), "all.vars.patroni_retry_timeout",
                 "whole number", id="retry-timeout-missing"),
    # coordination
    pytest.param(_set_var("tenir_coordination", "consul"), "all.vars.tenir_coordination",
                 "'consul'", id="unknown-coordination"),
]


@pytest.mark.parametrize(("mutate", "entry", "problem"), BAD_INVENTORIES)
def test_bad_inventory_is_refused(
    lab_data: Inventory, mutate: Mutation, entry: str, problem: str
) -> None:
    mutate(lab_data)
    with pytest.raises(TopologyError) as caught:
        parse_topology(lab_data, "bad.yml")
    err = caught.value
    assert err.entry == entry
    assert err.source == "bad.yml"
    assert problem in err.problem
    assert str(err).startswith(f"bad.yml: {entry}: ")


@pytest.mark.parametrize(
    ("document", "entry"),
    [
        pytest.param(None, "(document)", id="empty-document"),
        pytest.param(["all"], "(document)", id="document-is-a-list"),
        pytest.param({"ungrouped": {}}, "all", id="no-all-group"),
        pytest.param({"all": {"vars": {}}}, "all.children", id="no-children"),
    ],
)
def test_malformed_document_is_refused(document: Any, entry: str) -> None:
    with pytest.raises(TopologyError) as caught:
        parse_topology(document)
    assert caught.value.entry == entry


# --- files ----------------------------------------------------------------------------------------
def test_invalid_yaml_file_is_refused(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children: [sites\n", encoding="utf-8")
    with pytest.raises(TopologyError) as caught:
        load_topology(inventory)
    assert caught.value.entry == "(file)"
    assert caught.value.source == str(inventory)
    assert "not valid YAML" in str(caught.value)


@pytest.mark.parametrize(
    "relative",
    [
        pytest.param("absent.yml", id="missing-file"),
        pytest.param("empty-dir", id="directory-without-hosts-yml"),
    ],
)
def test_unreadable_inventory_is_refused(tmp_path: Path, relative: str) -> None:
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(TopologyError) as caught:
        load_topology(tmp_path / relative)
    assert caught.value.entry == "(file)"
    assert "cannot read inventory" in str(caught.value)


def test_bad_inventory_file_names_its_path(tmp_path: Path, lab_data: Inventory) -> None:
    _vars(lab_data)["patroni_ttl"] = 10
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump(lab_data), encoding="utf-8")
    with pytest.raises(TopologyError) as caught:
        load_topology(tmp_path)
    assert caught.value.source == str(inventory)
    assert caught.value.entry == "all.vars.patroni_ttl"
    assert str(caught.value).startswith(f"{inventory}: all.vars.patroni_ttl: ")


def test_key_given_twice_is_refused(tmp_path: Path, lab_inventory_path: Path) -> None:
    text = lab_inventory_path.read_text(encoding="utf-8").replace(
        "            witness-quorum:\n              ansible_host: 10.213.0.31\n",
        "            witness-quorum:\n              ansible_host: 10.213.0.31\n"
        "            witness-quorum:\n              ansible_host: 10.213.0.32\n",
    )
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(text, encoding="utf-8")
    with pytest.raises(TopologyError) as caught:
        load_topology(inventory)
    assert caught.value.entry == "(file)"
    assert "'witness-quorum' is given twice" in str(caught.value)


def test_inventory_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_bytes(b"all:\n  vars:\n    tenir_cluster_name: caf\xe9\n")
    with pytest.raises(TopologyError) as caught:
        load_topology(inventory)
    assert caught.value.entry == "(file)"
    assert "not UTF-8" in str(caught.value)
