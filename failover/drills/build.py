"""A drill's collaborators built from an inventory (what ``tenir drill`` runs with): the reader
and the API on the real servers, the platform (the lab's when this inventory's lab runs, else
SSH through Ansible), the switchover, the chaos collectors, the abort lever, the live view; and
the state a snapshot keeps (``snapshot.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TextIO

from cluster.httpjson import request_json
from cluster.lab.health import carriers_control_url, haproxy_stats
from cluster.node_api import operator_token
from cluster.topology import Topology
from failover.drain import coordination_settings
from failover.drills.catalog import Drill
from failover.drills.collectors import collectors_for
from failover.drills.facts import Facts
from failover.drills.lever import ABORT_KEY, ACTIVE_KEY, Lever
from failover.drills.live import open_view
from failover.drills.monitor import Display
from failover.drills.platform import Platform
from failover.drills.real_cluster import NodeDrillApi, Nodes, RealCluster, sites_of
from failover.drills.runner import Context, runner_identity
from failover.drills.session import Roles, Session, Settings
from failover.drills.snapshot import facts_state
from failover.switchover import build_switchover
from nodes.drain import drain_key


def runner_token() -> str:
    """``$TENIR_TOKEN``, else the lab's on-call token: on-call engineers run drills."""
    return operator_token("oncall")


def approver_token() -> str:
    """``$TENIR_TOKEN``, else the lab's operator token (someone other than the runner)."""
    return operator_token("operator")


def lab_is_running(topo: Topology) -> bool:
    from cluster.lab.lab import lab_coordination

    return topo.lab_network is not None and lab_coordination(topo) is not None


def primary_site_of(reader: RealCluster) -> Callable[[], str | None]:
    def primary_site() -> str | None:
        p = reader.facts().primary
        return p.site if p else None

    return primary_site


def platform_for(topo: Topology, reader: RealCluster, token: str,
                 say: Callable[[str], None]) -> Platform:
    def switchover() -> Any:
        return build_switchover(topo, say=say, timeout=120.0, token=token)

    if lab_is_running(topo):
        from cluster.lab.lab import Lab
        from failover.drills.lab_platform import LabPlatform

        return LabPlatform(Lab(topo), switchover, primary_site_of(reader))
    from failover.drills.ssh_platform import AnsibleAdHoc, SshPlatform

    inventory = Path(topo.source).parent
    return SshPlatform(topo, AnsibleAdHoc(inventory), switchover, primary_site_of(reader))


def lever_for(topo: Topology) -> Callable[[], Any]:
    from cluster.coordination.factory import open_coordinator

    settings = coordination_settings(topo)

    @contextlib.asynccontextmanager
    async def open_lever() -> AsyncIterator[Lever]:
        coordinator = await open_coordinator(topo.coordination, settings)  # type: ignore[arg-type]
        try:
            yield Lever(coordinator)
        finally:
            await coordinator.close()

    return open_lever


class Voice:
    """Where sentences go: straight out, or above the live view while it is on screen."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.default = say
        self.target = say

    def __call__(self, text: str) -> None:
        self.target(text)


class _ViewOn:
    """The live view, taking the voice while it is on screen."""

    def __init__(self, view: Any, voice: Voice) -> None:
        self.view = view
        self.voice = voice
        voice.target = view.say

    def update(self, monitor: Any) -> None:
        self.view.update(monitor)

    def close(self) -> None:
        self.view.close()
        self.voice.target = self.voice.default


def context_for(topo: Topology, drill: Drill, settings: Settings, *, stream: TextIO,
                say: Callable[[str], None], token: str | None = None
                ) -> tuple[Context, NodeDrillApi, Platform]:
    token = token or runner_token()
    voice = Voice(say)
    nodes = Nodes(topo, token)
    reader = RealCluster(topo, nodes)
    api = NodeDrillApi(nodes)
    platform = platform_for(topo, reader, token, voice)
    sites = sites_of(topo)

    def make_session(roles: Roles) -> Session:
        return Session(drill, sites=sites, roles=roles, cluster=reader, platform=platform,
                       api=api, settings=settings, say=voice)

    def display(session: Session) -> Display:
        return _ViewOn(open_view(session, stream), voice)

    ctx = Context(sites=sites, make_session=make_session, control=api, lever=lever_for(topo),
                  collectors=collectors_for(topo, lab_is_running(topo)), display=display,
                  runner_name=runner_identity(), say=voice)
    return ctx, api, platform


# --- what a snapshot keeps ---------------------------------------------------------------------

def _keys(topo: Topology) -> dict[str, Any]:
    from cluster.coordination.factory import open_coordinator

    async def go() -> dict[str, Any]:
        coordinator = await open_coordinator(topo.coordination,  # type: ignore[arg-type]
                                             coordination_settings(topo))
        try:
            out: dict[str, Any] = {}
            for key in (ACTIVE_KEY, ABORT_KEY,
                        *(drain_key(s.name) for s in topo.datacenter_sites)):
                got = await coordinator.get(key)
                out[key] = None if got is None else json.loads(got.value or b"null")
            if out.get(ACTIVE_KEY):
                out[ACTIVE_KEY].pop("heartbeat", None)
            return out
        finally:
            await coordinator.close()

    return asyncio.run(go())


def state_of(topo: Topology, facts: Facts | None = None) -> dict[str, Any]:
    """What ``tenir drill snapshot`` keeps (see ``snapshot.py``)."""
    if facts is None:
        facts = RealCluster(topo, Nodes(topo, operator_token("auditor"))).facts()
    state: dict[str, Any] = {"facts": facts_state(facts)}
    servers: dict[str, Any] = {}
    for host in topo.hosts_running("haproxy"):
        try:
            servers[host.name] = sorted([s.server, s.status.split(" ")[0]]
                                        for s in haproxy_stats(topo, host).servers())
        except Exception as exc:
            servers[host.name] = f"unreachable: {type(exc).__name__}"
    state["haproxy_servers"] = servers
    try:
        state["coordination_keys"] = _keys(topo)
    except Exception as exc:
        state["coordination_keys"] = f"unreadable: {type(exc).__name__}"
    if lab_is_running(topo):
        state["lab"] = _lab_state(topo)
    return state


def _lab_state(topo: Topology) -> dict[str, Any]:
    from chaos.faults import chaos_rules_left
    from cluster.lab.lab import Lab

    lab = Lab(topo)
    pids = {h.name: {s.name: s.pid for s in h.services} for h in lab.status()}
    carriers: dict[str, Any] = {}
    for host in topo.hosts_running("carriers"):
        try:
            _, carriers[host.name] = request_json(
                "GET", f"{carriers_control_url(topo, host)}/control", timeout=3.0)
        except Exception as exc:
            carriers[host.name] = f"unreachable: {type(exc).__name__}"
    return {"service_pids": pids, "chaos_chains": chaos_rules_left(lab),
            "carrier_settings": carriers}
