"""The lab's platform: each drill fault is a fault of the chaos suite (``chaos/faults.py``) on the
lab's machines, and each heal is that fault's own heal (a power cut heals with ``lab up``, which
boots the machines and waits until the lab is healthy)."""

from __future__ import annotations

from collections.abc import Callable

from chaos.faults import CarrierMisbehaves, CutLink, KillSite
from cluster.lab.health import carriers_control_url
from cluster.lab.lab import Lab, runs_here
from cluster.lab.netns import namespace_name
from failover.drills.platform import Fault, SwitchoverFault
from failover.switchover import Switchover


class LabPlatform:
    name = "lab"

    def __init__(self, lab: Lab, switchover: Callable[[], Switchover],
                 primary_site: Callable[[], str | None]) -> None:
        self.lab = lab
        self.topo = lab.topo
        self.make_switchover = switchover
        self.primary_site = primary_site

    def power_cut(self, site: str) -> Fault:
        return KillSite(self.lab, site)

    def cut_link(self, site_a: str, site_b: str) -> Fault:
        return CutLink(self.lab, site_a, site_b)

    def carrier_outage(self, site: str) -> Fault:
        return CarrierMisbehaves(self.lab, site, "all", "refuse")

    def switchover(self, to_site: str, from_site: str) -> Fault:
        return SwitchoverFault(self.make_switchover(), to_site, from_site, self.primary_site)

    def _services(self, host_name: str) -> str:
        host = self.topo.hosts[host_name]
        names = [s for s in ("etcd", "zookeeper", "patroni", "haproxy", "carriers", "node")
                 if runs_here(self.topo, host, s)]
        return ", ".join(names)

    def touches(self, operation: str, **params: str) -> list[str]:
        t = self.topo
        if operation == "power_cut":
            return [f"{h.name} ({h.address}): SIGKILL of the machine "
                    f"(systemd-nspawn; runs {self._services(h.name)}); heal: tenir lab up "
                    "boots it" for h in t.site_hosts(params["site"])]
        if operation == "cut_link":
            peers = ", ".join(str(h.address) for h in t.site_hosts(params["site_b"]))
            return [f"{h.name}: iptables chain TENIR_CHAOS in namespace "
                    f"{namespace_name(h.name)} drops {peers}; heal: the chain is removed"
                    for h in t.site_hosts(params["site_a"])]
        if operation == "carrier_outage":
            return [f"{h.name}: POST {carriers_control_url(t, h)}/control "
                    "{channel: all, mode: refuse}; heal: mode normal"
                    for h in t.hosts_running("carriers") if h.site == params["site"]]
        if operation == "switchover":
            return [f"tenir switchover --to {params['to_site']} (coordination key drain/<the "
                    "other site>, HAProxy admin sockets, Patroni POST /switchover); heal: "
                    "switchover back"]
        raise ValueError(f"unknown operation {operation!r}")
