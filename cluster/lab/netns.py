"""Network namespaces, veth pairs and the lab bridge, through iproute2.

Every object the lab creates carries a recognisable name: namespaces ``tenir-<host>``, the bridge
``tnrbr0`` and veth host ends ``tnrv<N>``, so that a later ``lab up`` or ``lab down`` can find and
remove what an interrupted lab left behind without touching anything else on the machine.
Namespaces get an address in the lab range on ``eth0`` and ``lo`` up, and no default route:
traffic cannot leave the lab.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass

NS_PREFIX = "tenir-"
BRIDGE = "tnrbr0"
VETH_PREFIX = "tnrv"


class NetnsError(RuntimeError):
    pass


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def namespace_name(host: str) -> str:
    return f"{NS_PREFIX}{host}"


def list_namespaces() -> list[str]:
    out = _run("ip", "-json", "netns", "list", check=False).stdout.strip()
    if not out:
        return []
    return sorted(str(e["name"]) for e in json.loads(out) if str(e["name"]).startswith(NS_PREFIX))


def list_links() -> list[str]:
    out = _run("ip", "-json", "link", "show").stdout.strip()
    names = [str(e["ifname"]) for e in json.loads(out or "[]")]
    return sorted(n for n in names if n == BRIDGE or n.startswith(VETH_PREFIX))


def namespace_pids(ns: str) -> list[int]:
    proc = _run("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in proc.stdout.split() if p.strip().isdigit()]


@dataclass(frozen=True)
class Attachment:
    host: str
    namespace: str
    veth: str
    address: ipaddress.IPv4Address


def ensure_bridge(address: ipaddress.IPv4Address, network: ipaddress.IPv4Network) -> None:
    if BRIDGE not in list_links():
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{address}/{network.prefixlen}", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")


def ensure_namespace(att: Attachment, network: ipaddress.IPv4Network) -> None:
    """Create the namespace and its veth pair unless they exist. Idempotent."""
    if att.namespace not in list_namespaces():
        _run("ip", "netns", "add", att.namespace)
    _run("ip", "-n", att.namespace, "link", "set", "lo", "up")
    has_eth0 = _run("ip", "-n", att.namespace, "link", "show", "eth0", check=False).returncode == 0
    if not has_eth0:
        if att.veth in list_links():
            _run("ip", "link", "del", att.veth)
        _run("ip", "link", "add", att.veth, "type", "veth", "peer", "name", "eth0",
             "netns", att.namespace)
        _run("ip", "link", "set", att.veth, "master", BRIDGE)
        _run("ip", "link", "set", att.veth, "up")
        _run("ip", "-n", att.namespace, "addr", "add", f"{att.address}/{network.prefixlen}",
             "dev", "eth0")
    _run("ip", "-n", att.namespace, "link", "set", "eth0", "up")


def delete_namespace(ns: str) -> None:
    _run("ip", "netns", "del", ns, check=False)


def delete_links() -> None:
    for link in list_links():
        if link != BRIDGE:
            _run("ip", "link", "del", link, check=False)
    if BRIDGE in list_links():
        _run("ip", "link", "del", BRIDGE, check=False)
