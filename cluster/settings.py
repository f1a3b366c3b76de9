"""Where a setting's value comes from, in Ansible's order: host vars, then the inventory's global
vars, then the role's defaults (``ansible/roles/<role>/defaults/main.yml``)."""

from __future__ import annotations

from functools import cache
from typing import Any

from cluster.render import role_defaults
from cluster.topology import Host, Topology


@cache
def _defaults(role: str) -> dict[str, Any]:
    return role_defaults(role)


def setting(topo: Topology, host: Host | None, role: str, name: str) -> Any:
    if host is not None and name in host.vars:
        return host.vars[name]
    if name in topo.vars:
        return topo.vars[name]
    defaults = _defaults(role)
    if name not in defaults:
        raise KeyError(f"no value for {name} (role {role})")
    return defaults[name]


def int_setting(topo: Topology, host: Host | None, role: str, name: str) -> int:
    return int(setting(topo, host, role, name))


def coordination_port(topo: Topology) -> int:
    """The client port of the coordination service the topology uses (etcd or ZooKeeper)."""
    if topo.coordination == "zookeeper":
        return int_setting(topo, None, "zookeeper", "zookeeper_client_port")
    return int_setting(topo, None, "etcd", "etcd_client_port")


def coordination_endpoints(topo: Topology) -> list[str]:
    """``address:port`` of each member of the coordination service, in inventory order: what the
    alert nodes, the CLI and Patroni connect to."""
    port = coordination_port(topo)
    return [f"{h.address}:{port}" for h in topo.hosts_running(topo.coordination)]
