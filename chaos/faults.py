"""Faults for the lab, each paired with its heal (Jepsen's split: faults here, workloads and
checkers beside). A fault changes only what the lab created: processes it started, iptables
rules in a chain of its own (``TENIR_CHAOS``) inside the lab's namespaces, simulator controls.

Use as a context manager so the heal always runs: ``with faulted(IsolateSite(lab, "paris")):``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from cluster.httpjson import request_json
from cluster.lab.health import carriers_control_url
from cluster.lab.lab import Lab
from cluster.lab.netns import namespace_name

CHAIN = "TENIR_CHAOS"


class Fault(Protocol):
    def describe(self) -> str: ...
    def inject(self) -> None: ...
    def heal(self) -> None: ...


@contextmanager
def faulted(fault: Fault) -> Iterator[Fault]:
    fault.inject()
    try:
        yield fault
    finally:
        fault.heal()


def _ipt(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, "iptables", "-w", "5", *args],
                          capture_output=True, text=True, timeout=30, check=check)


def _drop_peers(ns: str, peers: list[str]) -> None:
    _ipt(ns, "-N", CHAIN, check=False)
    for hook in ("INPUT", "OUTPUT"):
        if _ipt(ns, "-C", hook, "-j", CHAIN, check=False).returncode != 0:
            _ipt(ns, "-I", hook, "-j", CHAIN)
    for peer in peers:
        _ipt(ns, "-A", CHAIN, "-s", peer, "-j", "DROP")
        _ipt(ns, "-A", CHAIN, "-d", peer, "-j", "DROP")


def _clear(ns: str) -> None:
    for hook in ("INPUT", "OUTPUT"):
        while _ipt(ns, "-D", hook, "-j", CHAIN, check=False).returncode == 0:
            pass
    _ipt(ns, "-F", CHAIN, check=False)
    _ipt(ns, "-X", CHAIN, check=False)


@dataclass
class CutLink:
    """Cut every link between the hosts of two sites (others still reach both)."""

    lab: Lab
    site_a: str
    site_b: str

    def describe(self) -> str:
        return f"cut the link between {self.site_a} and {self.site_b}"

    def inject(self) -> None:
        peers = [str(h.address) for h in self.lab.topo.site_hosts(self.site_b)]
        for host in self.lab.topo.site_hosts(self.site_a):
            _drop_peers(namespace_name(host.name), peers)

    def heal(self) -> None:
        for host in self.lab.topo.site_hosts(self.site_a):
            _clear(namespace_name(host.name))


@dataclass
class IsolateSite:
    """Cut a site from every other site, the witness included: it is a coordination minority."""

    lab: Lab
    site: str

    def describe(self) -> str:
        return f"isolate site {self.site} from every other site"

    def inject(self) -> None:
        peers = [str(h.address) for h in self.lab.topo.hosts.values() if h.site != self.site]
        for host in self.lab.topo.site_hosts(self.site):
            _drop_peers(namespace_name(host.name), peers)

    def heal(self) -> None:
        for host in self.lab.topo.site_hosts(self.site):
            _clear(namespace_name(host.name))


@dataclass
class KillSite:
    """A power cut of every machine of a site; the heal boots them again (lab up), and their
    own systemd starts their services."""

    lab: Lab
    site: str

    def describe(self) -> str:
        return f"power cut of every machine of site {self.site}"

    def inject(self) -> None:
        self.lab.kill_site(self.site)

    def heal(self) -> None:
        self.lab.up(timeout=240)


@dataclass
class KillService:
    """kill -9 of one service's main process on one host (an alert node, etcd, HAProxy...).
    Its unit's restart policy brings it back, as on a production machine; the heal (lab up)
    waits until the lab is whole again."""

    lab: Lab
    host: str
    service: str

    def describe(self) -> str:
        return f"kill -9 {self.service} on {self.host}"

    def inject(self) -> None:
        if self.lab.service_pid(self.host, self.service) is None:
            raise RuntimeError(f"{self.service} on {self.host} was not running")
        self.lab.kill_service(self.host, self.service)

    def heal(self) -> None:
        self.lab.up(timeout=240)


@dataclass
class CarrierMisbehaves:
    """A site's carrier for one channel refuses, times out, throttles or slows down."""

    lab: Lab
    site: str
    channel: str
    mode: str  # refuse | timeout | throttle | slow

    def describe(self) -> str:
        return f"the {self.channel} carrier of {self.site} goes into '{self.mode}'"

    def _post(self, mode: str) -> None:
        host = next(h for h in self.lab.topo.hosts_running("carriers") if h.site == self.site)
        request_json("POST", f"{carriers_control_url(self.lab.topo, host)}/control",
                     {"channel": self.channel, "mode": mode})

    def inject(self) -> None:
        self._post(self.mode)

    def heal(self) -> None:
        self._post("normal")


def chaos_rules_left(lab: Lab) -> list[str]:
    """Namespaces that still hold the chaos chain (a heal that did not run)."""
    left = []
    for host in lab.topo.hosts.values():
        ns = namespace_name(host.name)
        exists = os.path.exists(f"/run/netns/{ns}")
        if exists and _ipt(ns, "-S", CHAIN, check=False).returncode == 0:
            left.append(ns)
    return left
