"""Vars plugin: each host's site, from the inventory's shape.

tenir's inventories place every host in exactly one site group, a child of the group ``sites``
(``all.children.sites.children.paris.hosts...``). This plugin gives each host ``tenir_site``,
the name of that group, so that roles and templates can say "the HAProxy of my site" without the
operator writing the site twice. A host in no site, or in two, gets no ``tenir_site``; the
preflight play refuses it, naming the host.
"""

from __future__ import annotations

from typing import Any

from ansible.inventory.group import Group
from ansible.inventory.host import Host
from ansible.plugins.vars import BaseVarsPlugin

DOCUMENTATION = """
    name: tenir_topology
    short_description: each host's tenir_site, from the child of group 'sites' that holds it
    description:
      - Sets C(tenir_site) for every host that belongs to exactly one child group of C(sites).
    options:
      stage:
        ini:
          - key: stage
            section: vars_tenir_topology_plugin
        env:
          - name: ANSIBLE_VARS_PLUGIN_STAGE
    extends_documentation_fragment:
      - vars_plugin_staging
"""

SITES_GROUP = "sites"


def site_groups(host: Host) -> list[str]:
    """Names of the groups holding ``host`` whose parent is the ``sites`` group."""
    return sorted({g.name for g in host.get_groups()
                   if any(p.name == SITES_GROUP for p in g.parent_groups)})


class VarsModule(BaseVarsPlugin):
    REQUIRES_ENABLED = True

    def get_vars(self, loader: Any, path: str, entities: Any, cache: bool = True) -> dict[str, Any]:
        super().get_vars(loader, path, entities)
        if not isinstance(entities, list):
            entities = [entities]
        out: dict[str, Any] = {}
        for entity in entities:
            if isinstance(entity, Group) or not isinstance(entity, Host):
                continue
            sites = site_groups(entity)
            if len(sites) == 1:
                out["tenir_site"] = sites[0]
        return out
