"""Faults for the lab, each paired with its heal (Jepsen's split: faults here, workloads and
checkers beside). A fault changes only what the lab created: its services (through the lab's
public operations, :class:`chaos.labops.LabOps`), iptables rules in a chain of its own
(``TENIR_CHAOS``, :mod:`chaos.firewall`) inside the lab's namespaces, simulator controls.
More faults: :mod:`chaos.power` (a site's power cut), :mod:`chaos.process_faults` (a frozen
node, the postmaster, the coordination leader or a member), :mod:`chaos.latency`.

Use as a context manager so the heal always runs: ``with faulted(IsolateSite(lab, "paris")):``.
A heal that restarts something waits until the lab is whole again (:func:`chaos.labops.restore`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from chaos.firewall import CHAIN, Firewall, Iptables
from chaos.labops import LabOps, restore
from cluster.httpjson import request_json
from cluster.lab.health import carriers_control_url
from cluster.lab.netns import namespace_name

__all__ = ["CHAIN", "CarrierMisbehaves", "CutLink", "Fault", "IsolateSite", "KillService",
           "KillSite", "chaos_rules_left", "faulted"]


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


@dataclass
class CutLink:
    """Cut every link between the hosts of two sites (others, the witness, still reach both)."""

    lab: LabOps
    site_a: str
    site_b: str
    firewall: Firewall = field(default_factory=Iptables)

    def describe(self) -> str:
        return f"cut the link between {self.site_a} and {self.site_b}"

    def inject(self) -> None:
        peers = [str(h.address) for h in self.lab.topo.site_hosts(self.site_b)]
        for host in self.lab.topo.site_hosts(self.site_a):
            self.firewall.drop_peers(namespace_name(host.name), peers)

    def heal(self) -> None:
        for host in self.lab.topo.site_hosts(self.site_a):
            self.firewall.clear(namespace_name(host.name))


@dataclass
class IsolateSite:
    """Cut a site from every other site, the witness included: it is a coordination minority."""

    lab: LabOps
    site: str
    firewall: Firewall = field(default_factory=Iptables)

    def describe(self) -> str:
        return f"isolate site {self.site} from every other site"

    def inject(self) -> None:
        peers = [str(h.address) for h in self.lab.topo.hosts.values() if h.site != self.site]
        for host in self.lab.topo.site_hosts(self.site):
            self.firewall.drop_peers(namespace_name(host.name), peers)

    def heal(self) -> None:
        for host in self.lab.topo.site_hosts(self.site):
            self.firewall.clear(namespace_name(host.name))


@dataclass
class KillSite:
    """A power cut of every machine of a site, at once (no silence first: see
    :class:`chaos.power.SitePowerCut`); the heal boots them again, and their own systemd starts
    their services."""

    lab: LabOps
    site: str

    def describe(self) -> str:
        return f"power cut of every machine of site {self.site}"

    def inject(self) -> None:
        self.lab.kill_site(self.site)

    def heal(self) -> None:
        restore(self.lab)


@dataclass
class KillService:
    """kill -9 of one service's main process on one host (an alert node, etcd, HAProxy,
    Patroni...). Its unit's restart policy brings it back after a second or two, as on a
    production machine (a killed alert node then waits for its old membership to expire before
    it can join again); the heal waits until the lab is whole again."""

    lab: LabOps
    host: str
    service: str

    def describe(self) -> str:
        return f"kill -9 {self.service} on {self.host}"

    def inject(self) -> None:
        if self.lab.service_pid(self.host, self.service) is None:
            raise RuntimeError(f"{self.service} on {self.host} was not running")
        self.lab.kill_service(self.host, self.service)

    def heal(self) -> None:
        restore(self.lab)


Post = Callable[[str, dict[str, Any]], None]  # (site, control body)
CARRIER_MODES = ("refuse", "timeout", "throttle", "slow", "drop_receipts")


@dataclass
class CarrierMisbehaves:
    """A site's carrier for one channel (or ``all``) refuses, times out, throttles, slows down
    (``delay_ms``) or drops its delivery receipts (a flag beside the mode: it accepts, never
    confirms). The heal puts the channel back to normal, receipts included."""

    lab: LabOps
    site: str
    channel: str
    mode: str  # one of CARRIER_MODES
    delay_ms: int | None = None
    throttle_per_s: float | None = None
    refuse_temporary: bool | None = None
    post: Post | None = None  # default: the site's simulator control API

    def __post_init__(self) -> None:
        if self.mode not in CARRIER_MODES:
            raise ValueError(f"mode: one of {', '.join(CARRIER_MODES)}, not {self.mode!r}")

    def describe(self) -> str:
        what = {"refuse": "refuses every message", "timeout": "never answers",
                "throttle": f"throttles beyond {self.throttle_per_s or 0:g} messages/s",
                "slow": f"answers after {self.delay_ms or 0} ms",
                "drop_receipts": "accepts but never sends delivery receipts"}[self.mode]
        return f"the {self.channel} carrier of {self.site} {what}"

    def body(self) -> dict[str, Any]:
        if self.mode == "drop_receipts":
            return {"channel": self.channel, "drop_receipts": True}
        body: dict[str, Any] = {"channel": self.channel, "mode": self.mode}
        for name in ("delay_ms", "throttle_per_s", "refuse_temporary"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return body

    def _post(self, body: dict[str, Any]) -> None:
        if self.post is not None:
            self.post(self.site, body)
            return
        host = next(h for h in self.lab.topo.hosts_running("carriers") if h.site == self.site)
        request_json("POST", f"{carriers_control_url(self.lab.topo, host)}/control", body)

    def inject(self) -> None:
        self._post(self.body())

    def heal(self) -> None:
        self._post({"channel": self.channel, "mode": "normal", "drop_receipts": False})


def chaos_rules_left(lab: LabOps, firewall: Firewall | None = None) -> list[str]:
    """Namespaces that still hold the chaos chain (a heal that did not run)."""
    fw = firewall if firewall is not None else Iptables()
    return [ns for host in lab.topo.hosts.values()
            if fw.holds_rules(ns := namespace_name(host.name))]
