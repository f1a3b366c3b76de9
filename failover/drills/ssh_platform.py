"""A production inventory's platform: each fault is a few commands run on the inventory's
machines through Ansible ad-hoc commands (``ansible HOST -i INVENTORY -b -m ansible.builtin.shell
-a CMD``), over the operator's SSH and sudo, exactly as the deployment reaches them. What each
fault runs is what ``plan`` prints.

* power cut of a site: on every host of the site, its tenir units are masked for this boot
  (so that systemd's restart policy cannot bring them back) and sent SIGKILL, every process of
  their cgroups at once; heal: unmask and start them;
* cut the link between two sites: on every host of the first that runs tenir, a chain of the
  drill's own (``TENIR_DRILL``) drops every packet to and from the other site's hosts; heal: the
  chain is removed;
* carrier outage of a site: on the site's alert nodes, the same chain rejects every packet to
  the site's carrier gateways (the inventory's ``carriers`` hosts of that site).
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from cluster.lab.lab import UNIT_OF_GROUP
from cluster.topology import COORDINATION_BACKENDS, Host, Topology
from failover.drills.platform import Fault, SwitchoverFault
from failover.switchover import Switchover

CHAIN = "TENIR_DRILL"


class CommandRunner(Protocol):
    def run(self, host: str, command: str) -> None:
        """Run ``command`` (a shell line) as root on ``host``; raise if it fails."""


class AnsibleAdHoc:
    """:class:`CommandRunner` through ``ansible`` (the operator's SSH, become)."""

    def __init__(self, inventory: Path, timeout: float = 120.0) -> None:
        self.inventory = inventory
        self.timeout = timeout

    def run(self, host: str, command: str) -> None:
        argv = ["ansible", host, "-i", str(self.inventory), "-b", "-m", "ansible.builtin.shell",
                "-a", command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout,
                              check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            raise RuntimeError(f"{host}: {command!r} failed: {' / '.join(tail)}")


def units_of(topo: Topology, host: Host) -> list[str]:
    """The systemd units tenir runs on ``host`` (the coordination backend in use only; the
    carrier simulator only where carriers are simulated)."""
    simulated = bool(topo.vars.get("tenir_carriers_simulated", False))
    units = []
    for group, unit in UNIT_OF_GROUP.items():
        if group in COORDINATION_BACKENDS and group != topo.coordination:
            continue
        if group == "carriers" and not simulated:
            continue
        if host.runs(group):
            units.append(unit)
    return units


def chain_up(rules: Sequence[str]) -> str:
    lines = [f"iptables -w 5 -N {CHAIN} 2>/dev/null || true",
             *(f"iptables -w 5 -C {h} -j {CHAIN} 2>/dev/null || iptables -w 5 -I {h} -j {CHAIN}"
               for h in ("INPUT", "OUTPUT")),
             *(f"iptables -w 5 -A {CHAIN} {rule}" for rule in rules)]
    return "; ".join(lines)


def chain_down() -> str:
    return (f"for h in INPUT OUTPUT; do while iptables -w 5 -D $h -j {CHAIN} 2>/dev/null; "
            f"do :; done; done; iptables -w 5 -F {CHAIN} 2>/dev/null; "
            f"iptables -w 5 -X {CHAIN} 2>/dev/null; true")


class CommandsFault:
    """A fault that runs ``inject`` commands host by host, and ``heal`` ones to undo them."""

    def __init__(self, description: str, runner: CommandRunner,
                 inject: list[tuple[str, str]], heal: list[tuple[str, str]]) -> None:
        self.description = description
        self.runner = runner
        self.inject_commands = inject
        self.heal_commands = heal

    def describe(self) -> str:
        return self.description

    def inject(self) -> None:
        for host, command in self.inject_commands:
            self.runner.run(host, command)

    def heal(self) -> None:
        problems = []
        for host, command in self.heal_commands:  # every host, whatever the one before did
            try:
                self.runner.run(host, command)
            except Exception as exc:
                problems.append(str(exc))
        if problems:
            raise RuntimeError("; ".join(problems))


class SshPlatform:
    name = "ssh"

    def __init__(self, topo: Topology, runner: CommandRunner,
                 switchover: Callable[[], Switchover],
                 primary_site: Callable[[], str | None]) -> None:
        self.topo = topo
        self.runner = runner
        self.make_switchover = switchover
        self.primary_site = primary_site

    def _power(self, site: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        cut, back = [], []
        for host in self.topo.site_hosts(site):
            units = " ".join(shlex.quote(u) for u in units_of(self.topo, host))
            if not units:
                continue
            cut.append((host.name, f"systemctl mask --runtime {units} && "
                                   f"systemctl kill --signal=SIGKILL {units}"))
            back.append((host.name, f"systemctl unmask --runtime {units} && "
                                    f"systemctl start {units}"))
        return cut, back

    def _link(self, site_a: str, site_b: str) -> list[tuple[str, str]]:
        peers = [str(h.address) for h in self.topo.site_hosts(site_b)]
        rules = [r for p in peers for r in (f"-s {p} -j DROP", f"-d {p} -j DROP")]
        # only the machines tenir runs on: a carrier gateway is not ours to change
        return [(h.name, chain_up(rules)) for h in self.topo.site_hosts(site_a)
                if units_of(self.topo, h)]

    def _carriers(self, site: str) -> list[tuple[str, str]]:
        gateways = [str(h.address) for h in self.topo.hosts_running("carriers")
                    if h.site == site]
        rules = [f"-d {g} -j REJECT" for g in gateways]
        return [(h.name, chain_up(rules)) for h in self.topo.hosts_running("alert_nodes")
                if h.site == site]

    def power_cut(self, site: str) -> Fault:
        cut, back = self._power(site)
        return CommandsFault(f"power cut of every tenir service of site {site}", self.runner,
                             cut, back)

    def cut_link(self, site_a: str, site_b: str) -> Fault:
        commands = self._link(site_a, site_b)
        return CommandsFault(f"cut the link between {site_a} and {site_b}", self.runner,
                             commands, [(h, chain_down()) for h, _ in commands])

    def carrier_outage(self, site: str) -> Fault:
        commands = self._carriers(site)
        return CommandsFault(f"every carrier of {site} unreachable", self.runner, commands,
                             [(h, chain_down()) for h, _ in commands])

    def switchover(self, to_site: str, from_site: str) -> Fault:
        return SwitchoverFault(self.make_switchover(), to_site, from_site, self.primary_site)

    def touches(self, operation: str, **params: str) -> list[str]:
        if operation == "power_cut":
            cut, back = self._power(params["site"])
            return [f"{h}: {c}; heal: {b}" for (h, c), (_, b) in zip(cut, back, strict=True)]
        if operation == "cut_link":
            return [f"{h}: {c}; heal: remove chain {CHAIN}"
                    for h, c in self._link(params["site_a"], params["site_b"])]
        if operation == "carrier_outage":
            return [f"{h}: {c}; heal: remove chain {CHAIN}"
                    for h, c in self._carriers(params["site"])]
        if operation == "switchover":
            return [f"tenir switchover --to {params['to_site']} (coordination key drain/<the "
                    "other site>, HAProxy admin sockets, Patroni POST /switchover); heal: "
                    "switchover back"]
        raise ValueError(f"unknown operation {operation!r}")
