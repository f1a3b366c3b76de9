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
