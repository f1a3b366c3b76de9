"""Filters that turn the inventory's groups into the member lists tenir's templates take."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit


def tenir_members(hosts: Sequence[str], hostvars: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``[{id, name, address, site}]`` for ``hosts`` in their order (id counts from 1).

    ``address`` is the host's ``ansible_host`` (the address services use), else its name.
    """
    out = []
    for i, name in enumerate(hosts, start=1):
        hv = hostvars[name]
        out.append({"id": i, "name": name, "address": str(hv.get("ansible_host", name)),
                    "site": str(hv.get("tenir_site", ""))})
    return out


def tenir_local_first(hosts: Sequence[str], hostvars: Mapping[str, Any],
                      site: str) -> list[str]:
    """``hosts`` with those of ``site`` first, the order otherwise kept (clients try endpoints
    in order: a node's session stays in its own site when the other datacenter is lost)."""
    return sorted(hosts, key=lambda h: hostvars[h].get("tenir_site") != site)


def tenir_in_site(hosts: Sequence[str], hostvars: Mapping[str, Any], site: str) -> list[str]:
    """Those of ``hosts`` that stand in ``site``."""
    return [h for h in hosts if hostvars[h].get("tenir_site") == site]


def tenir_sites(hosts: Sequence[str], hostvars: Mapping[str, Any]) -> list[dict[str, str]]:
    """``[{site, kind}]`` of the sites ``hosts`` stand in, in inventory order."""
    seen: dict[str, str] = {}
    for h in hosts:
        site = hostvars[h].get("tenir_site")
        if site and site not in seen:
            seen[str(site)] = str(hostvars[h].get("tenir_site_kind", ""))
    return [{"site": site, "kind": kind} for site, kind in seen.items()]


def tenir_pip_args(find_links: Sequence[str], index_url: str = "") -> str:
    """pip's options to install from wheelhouses (no index then) or from one index. A wheelhouse
    served over plain HTTP (the lab's, on its own bridge) is trusted by name."""
    args = ["--disable-pip-version-check"]
    if find_links:
        args.append("--no-index")
        for link in find_links:
            args += ["--find-links", link]
            if link.startswith("http://"):
                args += ["--trusted-host", urlsplit(link).hostname or ""]
    elif index_url:
        args += ["--index-url", index_url]
    return " ".join(args)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"tenir_members": tenir_members, "tenir_local_first": tenir_local_first,
                "tenir_in_site": tenir_in_site, "tenir_pip_args": tenir_pip_args,
                "tenir_sites": tenir_sites}
