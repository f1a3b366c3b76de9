"""The one description of a tenir deployment: an Ansible YAML inventory, loaded into typed objects.

Layout of the inventory (see ``inventories/lab/hosts.yml``):

* ``all.vars``: cluster-wide variables (timings, coordination backend, lab network);
* ``all.children.sites.children.<site>``: one group per site, with ``vars.tenir_site_kind``
  (``datacenter`` or ``witness``) and its ``hosts`` (each with ``ansible_host``, its address);
* ``all.children.<service>.hosts``: one group per service (``etcd``, ``zookeeper``, ``postgres``,
  ``haproxy``, ``alert_nodes``, ``carriers``) naming the hosts that run it.

Every rule is checked at load and every error names the inventory entry at fault, as a dotted path
(``all.children.sites.children.paris.hosts.paris-db.ansible_host``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

SITE_KINDS = ("datacenter", "witness")
SERVICES = ("etcd", "zookeeper", "postgres", "haproxy", "alert_nodes", "carriers",
            "evidence_witness")
COORDINATION_BACKENDS = ("etcd", "zookeeper")
PATRONI_MIN_TTL = 20  # Patroni 4 refuses a smaller ttl.


class TopologyError(ValueError):
    """An inventory that tenir cannot run on. ``entry`` is the dotted path of the entry at fault."""

    def __init__(self, source: str, entry: str, problem: str) -> None:
        self.source = source
        self.entry = entry
        self.problem = problem
        super().__init__(f"{source}: {entry}: {problem}")


@dataclass(frozen=True)
class Timings:
    """Patroni's HA timings, in seconds."""

    ttl: int
    loop_wait: int
    retry_timeout: int


@dataclass(frozen=True)
class NodeTimings:
    """Alert-node timings, in seconds (the RTO budget: docs/failover-timings.md)."""

    membership_ttl: float  # lease (etcd) / session timeout (ZooKeeper) of a node's membership
    retry_timeout: float  # every coordination call finishes within this
    fencing_safety: float  # a node stops acting once its membership is older than ttl - safety
    watchdog_cycle: float  # how often the watchdog leader looks
    batch_lease: float  # a claimed batch's lease, renewed every sixth of it


@dataclass(frozen=True)
class Host:
    name: str
    site: str
    address: ipaddress.IPv4Address
    services: frozenset[str]
    vars: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def runs(self, service: str) -> bool:
        return service in self.services


@dataclass(frozen=True)
class Site:
    name: str
    kind: str
    hosts: tuple[str, ...]

    @property
    def is_datacenter(self) -> bool:
        return self.kind == "datacenter"


@dataclass(frozen=True)
class Topology:
    name: str
    source: str
    sites: Mapping[str, Site]
    hosts: Mapping[str, Host]
    timings: Timings
    coordination: str
    vars: Mapping[str, Any] = field(compare=False)
    node_timings: NodeTimings = field(
        default_factory=lambda: NodeTimings(6.0, 2.0, 2.0, 1.0, 15.0), compare=False)
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    def hosts_running(self, service: str) -> list[Host]:
        return [h for h in self.hosts.values() if h.runs(service)]

    def group_members(self, service: str) -> list[Host]:
        """The hosts of a service group in the order the group lists them (ZooKeeper numbers
        its members by it), falling back to host order for a topology built without groups."""
        names = self.groups.get(service)
        if names is None:
            return self.hosts_running(service)
        return [self.hosts[n] for n in names]

    def site_hosts(self, site: str) -> list[Host]:
        return [self.hosts[n] for n in self.sites[site].hosts]

    @property
    def datacenter_sites(self) -> list[Site]:
        return [s for s in self.sites.values() if s.is_datacenter]

    def postgres_host_of_site(self, site: str) -> Host:
        return next(h for h in self.site_hosts(site) if h.runs("postgres"))

    @property
    def lab_network(self) -> ipaddress.IPv4Network | None:
        raw = self.vars.get("tenir_lab_network")
        return ipaddress.IPv4Network(raw) if raw else None

    @property
    def lab_bridge_address(self) -> ipaddress.IPv4Address | None:
        raw = self.vars.get("tenir_lab_bridge_address")
        return ipaddress.IPv4Address(raw) if raw else None


def load_topology(path: str | Path) -> Topology:
    """Read and validate an inventory file (or a directory holding ``hosts.yml``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "hosts.yml"
    source = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(source, "(file)", f"cannot read inventory: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise TopologyError(source, "(file)", f"not UTF-8 text: {exc.reason} at byte "
                            f"{exc.start}") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TopologyError(source, "(file)", f"not valid YAML: {exc}") from exc
    return parse_topology(data, source)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _mapping(value: Any, source: str, entry: str, *, required: bool = True) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if value is None:
        raise TopologyError(source, entry, "is missing")
    if not isinstance(value, dict):
        raise TopologyError(source, entry, f"must be a mapping, not {type(value).__name__}")
    return value


def _int_var(variables: Mapping[str, Any], name: str, source: str, entry: str) -> int:
    value = variables.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TopologyError(source, f"{entry}.{name}",
                            f"must be a whole number of seconds, got {value!r}")
    if value <= 0:
        raise TopologyError(source, f"{entry}.{name}", f"must be positive, got {value}")
    return value


def _timings(variables: Mapping[str, Any], source: str) -> Timings:
    entry = "all.vars"
    t = Timings(
        ttl=_int_var(variables, "patroni_ttl", source, entry),
        loop_wait=_int_var(variables, "patroni_loop_wait", source, entry),
        retry_timeout=_int_var(variables, "patroni_retry_timeout", source, entry),
    )
    if t.ttl < PATRONI_MIN_TTL:
        raise TopologyError(
            source, f"{entry}.patroni_ttl",
            f"is {t.ttl}; Patroni refuses a ttl below {PATRONI_MIN_TTL}",
        )
    if t.loop_wait + 2 * t.retry_timeout > t.ttl:
        raise TopologyError(
            source,
            f"{entry}.patroni_ttl",
            f"loop_wait + 2*retry_timeout = {t.loop_wait} + 2*{t.retry_timeout} = "
            f"{t.loop_wait + 2 * t.retry_timeout} exceeds ttl {t.ttl} (Patroni's rule)",
        )
    return t


def _seconds(variables: Mapping[str, Any], name: str, default: float, source: str) -> float:
    value = variables.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise TopologyError(source, f"all.vars.{name}", f"must be a positive number of seconds,"
                            f" got {value!r}")
    return float(value)


def _node_timings(variables: Mapping[str, Any], source: str) -> NodeTimings:
    t = NodeTimings(
        membership_ttl=_seconds(variables, "tenir_membership_ttl", 6.0, source),
        retry_timeout=_seconds(variables, "tenir_coordination_retry_timeout", 2.0, source),
        fencing_safety=_seconds(variables, "tenir_fencing_safety", 2.0, source),
        watchdog_cycle=_seconds(variables, "tenir_watchdog_cycle_s", 1.0, source),
        batch_lease=_seconds(variables, "tenir_node_lease_s", 15.0, source),
    )
    if 2 * t.retry_timeout >= t.membership_ttl:
        raise TopologyError(source, "all.vars.tenir_membership_ttl",
                            f"{t.membership_ttl:g} must exceed 2 * tenir_coordination_retry_timeout"
                            f" ({2 * t.retry_timeout:g}) so a node can renew before it expires")
    if not t.retry_timeout <= t.fencing_safety < t.membership_ttl:
        raise TopologyError(source, "all.vars.tenir_fencing_safety",
                            f"{t.fencing_safety:g} must be at least the retry timeout "
                            f"({t.retry_timeout:g}), so a renewal under way cannot outlive it, and"
                            f" below the membership ttl ({t.membership_ttl:g})")
    if t.batch_lease < t.membership_ttl:
        raise TopologyError(source, "all.vars.tenir_node_lease_s",
                            f"{t.batch_lease:g} must be at least tenir_membership_ttl "
                            f"({t.membership_ttl:g}): the watchdog, not lease expiry, moves the "
                            "work of a dead node")
    if t.watchdog_cycle > t.membership_ttl:
        raise TopologyError(source, "all.vars.tenir_watchdog_cycle_s",
                            f"{t.watchdog_cycle:g} must not exceed tenir_membership_ttl "
                            f"({t.membership_ttl:g})")
    return t


def parse_topology(data: Any, source: str = "<inventory>") -> Topology:
    """Validate parsed inventory data; raise :class:`TopologyError` naming the first bad entry."""
    root = _mapping(data, source, "(document)")
    all_group = _mapping(root.get("all"), source, "all")
    global_vars = _mapping(all_group.get("vars"), source, "all.vars", required=False)
    children = _mapping(all_group.get("children"), source, "all.children")
    sites_group = _mapping(children.get("sites"), source, "all.children.sites")
    site_groups = _mapping(sites_group.get("children"), source, "all.children.sites.children")
    if not site_groups:
        raise TopologyError(source, "all.children.sites.children", "declares no site")

    sites: dict[str, Site] = {}
    host_site: dict[str, str] = {}
    host_vars: dict[str, dict[str, Any]] = {}
    host_entry: dict[str, str] = {}
    addresses: dict[ipaddress.IPv4Address, str] = {}
    network = global_vars.get("tenir_lab_network")
    lab_net: ipaddress.IPv4Network | None = None
    if network is not None:
        try:
            lab_net = ipaddress.IPv4Network(str(network))
        except ValueError as exc:
            raise TopologyError(source, "all.vars.tenir_lab_network",
                                f"not an IPv4 network: {exc}") from exc
        if not lab_net.is_private:
            raise TopologyError(
                source, "all.vars.tenir_lab_network", f"{lab_net} is not a private range"
            )
    bridge = global_vars.get("tenir_lab_bridge_address")
    if bridge is not None:
        try:
            bridge_addr = ipaddress.IPv4Address(str(bridge))
        except ValueError as exc:
            raise TopologyError(
                source, "all.vars.tenir_lab_bridge_address", f"not an IPv4 address: {exc}"
            ) from exc
        if lab_net is not None and bridge_addr not in lab_net:
            raise TopologyError(
                source, "all.vars.tenir_lab_bridge_address", f"{bridge_addr} is outside {lab_net}"
            )
        addresses[bridge_addr] = "all.vars.tenir_lab_bridge_address"

    for site_name, site_raw in site_groups.items():
        entry = f"all.children.sites.children.{site_name}"
        group = _mapping(site_raw, source, entry)
        svars = _mapping(group.get("vars"), source, f"{entry}.vars", required=False)
        kind = svars.get("tenir_site_kind")
        if kind not in SITE_KINDS:
            raise TopologyError(
                source, f"{entry}.vars.tenir_site_kind",
                f"must be one of {SITE_KINDS}, got {kind!r}",
            )
        hosts = _mapping(group.get("hosts"), source, f"{entry}.hosts")
        if not hosts:
            raise TopologyError(source, f"{entry}.hosts", "site has no host")
        for host_name, hraw in hosts.items():
            hentry = f"{entry}.hosts.{host_name}"
            if host_name in host_site:
                raise TopologyError(
                    source, hentry, f"host name already used in site {host_site[host_name]!r}"
                )
            hv = _mapping(hraw, source, hentry)
            raw_addr = hv.get("ansible_host")
            try:
                addr = ipaddress.IPv4Address(str(raw_addr))
            except ValueError as exc:
                raise TopologyError(
                    source, f"{hentry}.ansible_host", f"{raw_addr!r} is not an IPv4 address"
                ) from exc
            if addr in addresses:
                raise TopologyError(
                    source, f"{hentry}.ansible_host", f"{addr} is already used by {addresses[addr]}"
                )
            if lab_net is not None and addr not in lab_net:
                raise TopologyError(
                    source, f"{hentry}.ansible_host",
                    f"{addr} is outside tenir_lab_network {lab_net}",
                )
            addresses[addr] = hentry
            host_site[host_name] = site_name
            host_vars[host_name] = {**svars, **hv}
            host_entry[host_name] = hentry
        sites[site_name] = Site(name=site_name, kind=str(kind), hosts=tuple(hosts))

    services: dict[str, set[str]] = {name: set() for name in host_site}
    groups: dict[str, tuple[str, ...]] = {}
    for service in SERVICES:
        if service not in children:
            continue
        entry = f"all.children.{service}"
        group = _mapping(children[service], source, entry)
        members = _mapping(group.get("hosts"), source, f"{entry}.hosts")
        for host_name in members:
            if host_name not in host_site:
                raise TopologyError(
                    source, f"{entry}.hosts.{host_name}", "is not a host of any site"
                )
            services[host_name].add(service)
        groups[service] = tuple(members)
    for group_name in children:
        if group_name != "sites" and group_name not in SERVICES:
            raise TopologyError(
                source, f"all.children.{group_name}",
                f"unknown group; expected 'sites' or one of {SERVICES}",
            )

    hosts = {
        name: Host(
            name=name,
            site=host_site[name],
            address=ipaddress.IPv4Address(str(host_vars[name]["ansible_host"])),
            services=frozenset(services[name]),
            vars=host_vars[name],
        )
        for name in host_site
    }
    coordination = global_vars.get("tenir_coordination", "etcd")
    if coordination not in COORDINATION_BACKENDS:
        raise TopologyError(
            source, "all.vars.tenir_coordination",
            f"must be one of {COORDINATION_BACKENDS}, got {coordination!r}",
        )
    topo = Topology(
        name=str(global_vars.get("tenir_cluster_name", "tenir")),
        source=source,
        sites=sites,
        hosts=hosts,
        timings=_timings(global_vars, source),
        node_timings=_node_timings(global_vars, source),
        coordination=str(coordination),
        vars=MappingProxyType(dict(global_vars)),
        groups=MappingProxyType(groups),
    )
    _check_placement(topo)
    return topo


def with_coordination(topo: Topology, backend: str) -> Topology:
    """The same topology with another coordination backend (``tenir lab up --coordination``):
    the inventory must place that backend's three members too (its own group)."""
    if backend not in COORDINATION_BACKENDS:
        raise TopologyError(topo.source, "--coordination",
                            f"must be one of {COORDINATION_BACKENDS}, got {backend!r}")
    if backend == topo.coordination:
        return topo
    changed = dataclasses.replace(
        topo, coordination=backend,
        vars=MappingProxyType({**topo.vars, "tenir_coordination": backend}))
    _check_placement(changed)
    return changed


def _check_placement(topo: Topology) -> None:
    source = topo.source
    datacenters = topo.datacenter_sites
    if len(datacenters) != 2:
        raise TopologyError(
            source, "all.children.sites.children",
            f"needs exactly two datacenter sites, found {len(datacenters)}: "
            f"{[s.name for s in datacenters]}",
        )
    coord = topo.coordination
    members = topo.hosts_running(coord)
    if len(members) != 3:
        raise TopologyError(
            source, f"all.children.{coord}.hosts",
            f"needs exactly three {coord} members, found {len(members)}",
        )
    member_sites = [h.site for h in members]
    if len(set(member_sites)) != 3:
        raise TopologyError(
            source, f"all.children.{coord}.hosts",
            f"the three {coord} members must sit on three distinct sites, "
            f"got {sorted(member_sites)}",
        )
    for site in topo.sites.values():
        pg = [h for h in topo.site_hosts(site.name) if h.runs("postgres")]
        entry = "all.children.postgres.hosts"
        if site.is_datacenter and len(pg) != 1:
            raise TopologyError(
                source, f"{entry}.{pg[1].name}" if pg else entry,
                f"datacenter site {site.name!r} needs exactly one postgres host, found {len(pg)}",
            )
        if not site.is_datacenter and pg:
            raise TopologyError(
                source, f"{entry}.{pg[0].name}",
                f"postgres runs only in the two datacenter sites, not in {site.kind} site "
                f"{site.name!r}",
            )
        ha = [h for h in topo.site_hosts(site.name) if h.runs("haproxy")]
        if site.is_datacenter and not ha:
            raise TopologyError(
                source, "all.children.haproxy.hosts",
                f"datacenter site {site.name!r} has no haproxy host",
            )
        for group in ("alert_nodes", "carriers"):
            members = [h for h in topo.site_hosts(site.name) if h.runs(group)]
            if not site.is_datacenter and members:
                raise TopologyError(
                    source, f"all.children.{group}.hosts.{members[0].name}",
                    f"{group} run only in datacenter sites, not in {site.kind} site "
                    f"{site.name!r}",
                )
        carriers = [h for h in topo.site_hosts(site.name) if h.runs("carriers")]
        if site.is_datacenter and len(carriers) > 1:
            raise TopologyError(
                source, f"all.children.carriers.hosts.{carriers[1].name}",
                f"datacenter site {site.name!r} has more than one carriers host",
            )
