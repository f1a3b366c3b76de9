"""What a drill's faults act through: a :class:`Platform` makes each fault (an object with
``describe``, ``inject`` and ``heal``, the chaos suite's ``Fault``) and says exactly what it will
touch, host by host, before anything is done (``plan`` and ``--dry-run`` print it).

* ``lab_platform.LabPlatform``: the lab's machines, through ``chaos.faults`` (power cuts of
  systemd-nspawn machines, iptables in their namespaces, the carrier simulators' controls);
* ``ssh_platform.SshPlatform``: a production inventory's machines, through Ansible ad-hoc
  commands over SSH (systemd units, an iptables chain of the drill's own);
* ``tests/fakes/drill_cluster.py``: an in-memory cluster for the unit tests.

The planned switchover is a fault of its own here (``SwitchoverFault``): its "heal" moves the
primary back if the drill stopped after moving it.
"""

from __future__ import annotations

from typing import Any, Protocol

from failover.switchover import Switchover


class Fault(Protocol):
    def describe(self) -> str: ...
    def inject(self) -> None: ...
    def heal(self) -> None: ...


class Platform(Protocol):
    name: str

    def power_cut(self, site: str) -> Fault: ...
    def cut_link(self, site_a: str, site_b: str) -> Fault: ...
    def carrier_outage(self, site: str) -> Fault: ...
    def switchover(self, to_site: str, from_site: str) -> Fault: ...
    def touches(self, operation: str, **params: str) -> list[str]:
        """What ``operation`` (power_cut, cut_link, carrier_outage, switchover) with these
        sites acts on: one line per host or service, naming the action."""


class SwitchoverFault:
    """A planned switchover to ``to_site`` as a drill step; heal: back to ``from_site`` if the
    primary was moved and is still away (a drill stopped between the two moves)."""

    def __init__(self, switchover: Switchover, to_site: str, from_site: str,
                 primary_site: Any) -> None:
        self.switchover = switchover
        self.to_site = to_site
        self.from_site = from_site
        self.primary_site = primary_site  # () -> the site of the primary now, or None
        self.moved = False

    def describe(self) -> str:
        return f"planned switchover to {self.to_site}"

    def inject(self) -> None:
        self.switchover.run(self.to_site)
        self.moved = True

    def heal(self) -> None:
        if self.moved and self.primary_site() != self.from_site:
            self.switchover.run(self.from_site)
