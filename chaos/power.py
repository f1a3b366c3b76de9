"""A site's power cut as the rest of the world lives it: silence first, then death.

A SIGKILL alone is kinder than a real power cut: the kernel closes every socket of the killed
processes and their peers learn at once (a FIN or a RST). A datacenter whose power fails
just stops answering: its peers keep waiting on silence until their own timeouts fire. So
``inject`` first drops every packet to and from the site's machines, both directions, the
controller's bridge address included (the chaos collectors then see the site vanish as the
other sites do), waits ``silence_s``, then kills every machine of the site
(``Lab.kill_site``: each machine's init, every process at once). The heal removes the rules
and powers the site back (``lab up``: its machines boot with their disks, their own systemd
starts their services).

The runner keeps the power off for the scenario's ``power_back_after_s`` after the kill.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.firewall import Firewall, Iptables
from chaos.labops import LabOps, restore
from cluster.lab.netns import namespace_name


@dataclass
class SitePowerCut:
    lab: LabOps
    site: str
    silence_s: float
    firewall: Firewall = field(default_factory=Iptables)
    sleep: Callable[[float], None] = time.sleep
    killed: list[str] = field(default_factory=list)  # the machines the cut killed

    def __post_init__(self) -> None:
        if self.silence_s < 0:
            raise ValueError(f"silence_s: must be >= 0, not {self.silence_s!r}")

    def describe(self) -> str:
        silence = f"{self.silence_s:g} s of silence, then " if self.silence_s else ""
        return f"power cut of site {self.site}: {silence}every machine killed"

    def networks(self) -> list[str]:
        """What the site's machines stop reaching: the lab's network and the controller's
        bridge address (named even when it lies in that network)."""
        topo = self.lab.topo
        nets = [str(topo.lab_network)] if topo.lab_network is not None else \
            [str(h.address) for h in topo.hosts.values() if h.site != self.site]
        if topo.lab_bridge_address is not None:
            nets.append(str(topo.lab_bridge_address))
        return nets

    def inject(self) -> None:
        if self.silence_s > 0:
            nets = self.networks()
            for host in self.lab.topo.site_hosts(self.site):
                self.firewall.silence(namespace_name(host.name), str(host.address), nets)
            self.sleep(self.silence_s)
        self.killed = self.lab.kill_site(self.site)

    def heal(self) -> None:
        for host in self.lab.topo.site_hosts(self.site):
            self.firewall.clear(namespace_name(host.name))
        restore(self.lab)
