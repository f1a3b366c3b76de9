"""From a scenario's fault step to the fault object that injects and heals it on the lab, with
what the history says fails (the checkers read it) and how long the runner keeps it.

Sites in parameters are a site name or a role resolved once per run (:class:`Roles`):
``primary`` (the site of the PostgreSQL primary), ``standby`` (the other datacenter site),
``any`` (a datacenter site chosen by the run's seed).

The history's fault value: ``nodes`` (alert nodes that die or freeze) and ``site`` (the site
whose nodes fail or lose their path to PostgreSQL: a power cut, an isolation, the side of a cut
link without the primary, a site whose HAProxy dies or whose carrier misbehaves). The
duplicates checker bounds re-submissions by what those nodes had in flight; the watchdog checker
wants their batches moved before their lease would have expired.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chaos.faults import CarrierMisbehaves, CutLink, Fault, IsolateSite, KillService, KillSite
from chaos.firewall import Firewall, Iptables
from chaos.labops import LabOps
from chaos.latency import DegradedLink, IpNetns, NamespaceRunner, Side, between_sites
from chaos.power import SitePowerCut
from chaos.process_faults import FreezeNode, KillCoordination, KillPostmaster, Probe
from chaos.scenario import FaultStep
from cluster.lab.health import probe_coordination
from cluster.lab.netns import namespace_name
from cluster.topology import Topology


class PlanError(ValueError):
    """A step names something the lab does not have (a node, a site)."""


@dataclass(frozen=True)
class Roles:
    """The datacenter sites by their PostgreSQL role, read once before the first fault."""

    primary: str
    standby: str

    def site(self, raw: str, topo: Topology, rng: random.Random) -> str:
        if raw == "primary":
            return self.primary
        if raw == "standby":
            return self.standby
        if raw == "any":
            return rng.choice(sorted(s.name for s in topo.datacenter_sites))
        if raw not in topo.sites:
            raise PlanError(f"site {raw!r}: not a site of the lab ({', '.join(topo.sites)}) "
                            "nor primary, standby or any")
        return raw


@dataclass
class Tools:
    """What the faults use besides the lab; unit tests replace them."""

    firewall: Firewall = field(default_factory=Iptables)
    probe: Probe = probe_coordination
    runner: NamespaceRunner = field(default_factory=IpNetns)
    seed: int | None = None


@dataclass
class Planned:
    name: str
    fault: Fault
    value: dict[str, Any]  # what the history's fault op says fails
    hold_s: float  # how long the runner keeps it before healing (after the last step)


def _node(topo: Topology, name: str) -> str:
    if name not in topo.hosts or not topo.hosts[name].runs("alert_nodes"):
        nodes = ", ".join(h.name for h in topo.hosts_running("alert_nodes"))
        raise PlanError(f"node {name!r}: not an alert node of the lab ({nodes})")
    return name


def _host_of(topo: Topology, site: str, group: str) -> str:
    hosts = [h.name for h in topo.site_hosts(site) if h.runs(group)]
    if not hosts:
        raise PlanError(f"site {site!r} runs no {group}")
    return hosts[0]


def sides(topo: Topology, sites: list[str]) -> dict[str, Side]:
    return {s: Side(tuple(namespace_name(h.name) for h in topo.site_hosts(s)),
                    tuple(str(h.address) for h in topo.site_hosts(s))) for s in sites}


def plan(step: FaultStep, lab: LabOps, roles: Roles, rng: random.Random, fault_s: float,
         tools: Tools | None = None) -> Planned:
    """The fault of ``step``; ``fault_s`` is the scenario's fault duration."""
    t = tools or Tools()
    topo = lab.topo
    p: Mapping[str, Any] = step.params

    def site(key: str, default: str | None = None) -> str:
        return roles.site(str(p.get(key, default)), topo, rng)

    name = step.name
    if name == "kill_node":
        node = _node(topo, str(p["node"]))
        return Planned(name, KillService(lab, node, "node"), {"nodes": [node]}, fault_s)
    if name == "freeze_node":
        node = _node(topo, str(p["node"]))
        return Planned(name, FreezeNode(lab, node), {"nodes": [node]}, float(p["freeze_s"]))
    if name == "site_power_cut":
        s, silence = site("site"), float(p["silence_s"])
        back = p.get("power_back_after_s")
        hold = float(back) if back is not None else max(0.0, fault_s - silence)
        return Planned(name, SitePowerCut(lab, s, silence, t.firewall), {"site": s}, hold)
    if name == "isolate_site":
        s = site("site")
        return Planned(name, IsolateSite(lab, s, t.firewall), {"site": s}, fault_s)
    if name == "cut_link":
        a, b = site("site_a"), site("site_b")
        if a == b:
            raise PlanError(f"cut_link: site_a and site_b are both {a!r}")
        lost = b if a == roles.primary else a if b == roles.primary else None
        value: dict[str, Any] = {"sites": [a, b], **({"site": lost} if lost else {})}
        return Planned(name, CutLink(lab, a, b, t.firewall), value, fault_s)
    if name == "witness_loss":
        s = site("site", "witness")
        return Planned(name, KillSite(lab, s), {"site": s}, fault_s)
    if name in ("kill_postmaster", "kill_patroni"):
        host = _host_of(topo, roles.site(str(p["target"]), topo, rng), "postgres")
        fault: Fault = (KillPostmaster(lab, host) if name == "kill_postmaster"
                        else KillService(lab, host, "patroni"))
        return Planned(name, fault, {"host": host}, fault_s)
    if name in ("kill_coordination_leader", "kill_coordination_member"):
        which = "leader" if name == "kill_coordination_leader" else str(p["which"])
        return Planned(name, KillCoordination(lab, which, random.Random(rng.random()), t.probe),
                       {}, fault_s)
    if name == "kill_haproxy":
        s = site("site")
        return Planned(name, KillService(lab, _host_of(topo, s, "haproxy"), "haproxy"),
                       {"site": s}, fault_s)
    if name == "carrier":
        s = site("site")
        delay = p.get("delay_ms")
        fault = CarrierMisbehaves(lab, s, str(p["channel"]), str(p["mode"]),
                                  delay_ms=int(delay) if delay is not None else None,
                                  throttle_per_s=p.get("throttle_per_s"),
                                  refuse_temporary=p.get("refuse_temporary"))
        return Planned(name, fault, {"site": s, "channel": p["channel"]}, fault_s)
    if name == "degraded_link":
        a, b = site("site_a"), site("site_b")
        paths = between_sites(sides(topo, [a, b]), {(a, b): float(p["rtt_ms"])},
                              float(p.get("loss", 0.0)))
        return Planned(name, DegradedLink(paths, runner=t.runner, seed=t.seed),
                       {"sites": [a, b]}, fault_s)
    raise PlanError(f"fault {name!r}: no nemesis for it")
