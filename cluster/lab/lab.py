"""The embedded lab: two datacenter sites and a witness as network namespaces on one machine,
running the real etcd or ZooKeeper, Patroni/PostgreSQL, HAProxy, carrier simulators and alert
nodes described by an inventory.

``up`` is idempotent: on a lab that runs it restarts only what died (healing a killed site), on a
lab of which nothing runs it first clears what an interrupted lab left behind. ``down`` stops every
process the lab started, by PID (and the postmaster Patroni detaches), then removes namespaces,
links and, unless asked to keep it, data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.lab import health, netns, procs
from cluster.lab.layout import LabState, Layout, lab_dir, patroni_bin
from cluster.lab.seed import seed_lab
from cluster.lab.services import (
    JAVA,
    SERVICE_ORDER,
    ZK_JARS,
    ServiceSpec,
    runs_here,
    specs_for,
    write_config,
)
from cluster.settings import int_setting, setting
from cluster.topology import Host, Topology
from replication.appdb import APP_DB, APP_USER, OWNER_USER, dsn, ensure_app_database
from replication.migrate import migrate

Say = Callable[[str], None]
REQUIRED_BINARIES = ("ip", "haproxy", "setpriv", "/usr/lib/postgresql/15/bin/postgres")
COORDINATION_BINARIES = {"etcd": ("etcd",), "zookeeper": (str(JAVA), *(str(j) for j in ZK_JARS))}


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    running: bool


@dataclass(frozen=True)
class HostStatus:
    name: str
    site: str
    namespace: str
    address: str
    namespace_exists: bool
    services: tuple[ServiceStatus, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "site": self.site, "namespace": self.namespace,
            "address": self.address, "namespace_exists": self.namespace_exists,
            "services": [{"name": s.name, "pid": s.pid, "running": s.running}
                         for s in self.services],
        }


def _quiet(_: str) -> None:
    return None


def lab_coordination(topo: Topology, layout: Layout | None = None) -> str | None:
    """The coordination backend the lab of this inventory runs with (or kept data for), or None
    when no such lab exists: commands against a running lab then talk to the right service."""
    state = (layout or Layout(lab_dir())).load_state()
    if not state.coordination or not state.inventory:
        return None
    if Path(state.inventory).resolve() != Path(topo.source).resolve():
        return None
    if state.keep_data or any(procs.is_running(r.pid, r.start_time) for r in state.records):
        return state.coordination
    return None


class Lab:
    def __init__(self, topo: Topology, layout: Layout | None = None, say: Say = _quiet) -> None:
        if topo.lab_network is None or topo.lab_bridge_address is None:
            raise LabError(f"{topo.source}: all.vars.tenir_lab_network and "
                           "tenir_lab_bridge_address are needed to run it as a lab")
        self.topo = topo
        self.layout = layout or Layout(lab_dir())
        self.say = say

    # --- checks ------------------------------------------------------------------------------
    def preflight(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab creates network namespaces: run it as root")
        wanted = (*REQUIRED_BINARIES, *COORDINATION_BINARIES[self.topo.coordination])
        missing = [b for b in wanted if shutil.which(b) is None and not Path(b).is_file()]
        if not patroni_bin().exists():
            missing.append(str(patroni_bin()))
        if missing:
            raise LabError(f"missing programs: {', '.join(missing)} (run 'make install')")

    # --- up ----------------------------------------------------------------------------------
    def up(self, timeout: float = 240.0) -> list[HostStatus]:
        self.preflight()
        started = time.monotonic()
        state = self.layout.load_state()
        alive = [r for r in state.records if procs.is_running(r.pid, r.start_time)]
        if ((alive or state.keep_data) and state.coordination
                and state.coordination != self.topo.coordination):
            what = "runs" if alive else "kept its data"
            raise LabError(f"the lab {what} with {state.coordination} as its coordination "
                           f"service, not {self.topo.coordination}: run 'tenir lab down' first "
                           "(a Patroni cluster does not change its DCS)")
        if not alive:
            leftovers = netns.list_namespaces() or netns.list_links() or self.layout.root.exists()
            if leftovers:
                self.say("clearing what an earlier lab left behind"
                         + (" (keeping its data)" if state.keep_data else ""))
            self._clear(remove_data=not state.keep_data)
            state = LabState(inventory=str(Path(self.topo.source).resolve()), keep_data=False)
        else:
            state.records = alive
        state.inventory = str(Path(self.topo.source).resolve())
        state.coordination = self.topo.coordination
        state.keep_data = False
        self.layout.save_state(state)

        secrets = self.layout.load_or_create_secrets()
        assert self.topo.lab_network is not None and self.topo.lab_bridge_address is not None
        netns.ensure_bridge(self.topo.lab_bridge_address, self.topo.lab_network)
        for i, host in enumerate(self.topo.hosts.values()):
            netns.ensure_namespace(netns.Attachment(
                host.name, netns.namespace_name(host.name), f"{netns.VETH_PREFIX}{i}",
                host.address), self.topo.lab_network)
            self.layout.prepare_host(
                host.name, postgres=host.runs("postgres"),
                zookeeper_user=(str(setting(self.topo, host, "zookeeper", "zookeeper_user"))
                                if runs_here(self.topo, host, "zookeeper") else None))

        specs = specs_for(self.topo, self.layout, secrets)
        for spec in specs:
            write_config(spec, self.layout)
        self._stop_changed(specs, state)
        running = {(r.host, r.service) for r in state.records}

        def remaining() -> float:
            return max(5.0, timeout - (time.monotonic() - started))

        coordination = self.topo.coordination
        for spec in specs:
            if spec.service == coordination and (spec.host.name, coordination) not in running:
                self._start(spec, state)
        health.wait_coordination(self.topo, remaining())

        patroni = [s for s in specs if s.service == "patroni"]
        fresh = not any(svc == "patroni" for _, svc in running) and not any(
            (self.layout.pg_data(s.host.name) / "PG_VERSION").exists() for s in patroni)
        if fresh and patroni:
            # Bootstrap from the first datacenter's member, so a new lab's primary is predictable.
            self._start(patroni[0], state)
            health.wait_primary(self.topo, patroni[0].host, remaining())
        for spec in patroni:
            if (spec.host.name, "patroni") not in running and not self._recorded(state, spec):
                self._start(spec, state)
        for spec in specs:
            if spec.service == "haproxy" and (spec.host.name, "haproxy") not in running:
                self._start(spec, state)

        view = health.wait_replication(self.topo, remaining())
        assert view.primary is not None
        health.wait_haproxy_routes_to(self.topo, view.primary, remaining())
        self._ensure_timings(secrets)
        self._ensure_app_database(view.primary, secrets)
        for service in ("carriers", "node"):
            for spec in specs:
                if spec.service == service and (spec.host.name, service) not in running:
                    self._start(spec, state)
        health.wait_carriers(self.topo, remaining())
        health.wait_nodes(self.topo, remaining())
        seed_lab(self.topo, secrets)
        self.say(f"lab healthy in {time.monotonic() - started:.1f} s; PostgreSQL primary: "
                 f"{view.primary}, synchronous standby: {view.sync_standby}")
        return self.status()

    def _stop_changed(self, specs: list[ServiceSpec], state: LabState) -> None:
        """A running service whose configuration changed is stopped, to be started again with
        the new one (as an Ansible handler would restart it)."""
        for spec in specs:
            rec = next((r for r in state.records
                        if r.host == spec.host.name and r.service == spec.service), None)
            if rec is None or rec.config_sha == spec.config_sha:
                continue
            if spec.service == "patroni":
                # Patroni re-reads its file on SIGHUP; bootstrap-only and dynamic settings need no
                # restart (dynamic ones are then set through /config by _ensure_timings).
                self.say(f"configuration of patroni on {spec.host.name} changed: reloading")
                procs.signal_process(rec.pid, signal.SIGHUP, rec.start_time)
                state.records[state.records.index(rec)] = dataclasses.replace(
                    rec, config_sha=spec.config_sha)
                continue
            self.say(f"configuration of {spec.service} on {spec.host.name} changed: restarting")
            procs.stop([(rec.pid, rec.start_time)], timeout=20.0)
            if spec.service == "patroni":
                self._reap_postmaster(spec.host)
            state.records.remove(rec)
        self.layout.save_state(state)

    def _recorded(self, state: LabState, spec: ServiceSpec) -> bool:
        return any(r.host == spec.host.name and r.service == spec.service for r in state.records)

    def _start(self, spec: ServiceSpec, state: LabState) -> None:
        log = self.layout.log(spec.host.name, spec.service)
        if spec.service == "patroni":
            self._reap_postmaster(spec.host)
        pid = procs.spawn(spec.argv, log, cwd=self.layout.host_dir(spec.host.name),
                          env=spec.environment())
        start_time = procs.start_time_of(pid) or 0
        state.records = [r for r in state.records
                         if not (r.host == spec.host.name and r.service == spec.service)]
        state.records.append(procs.ProcessRecord(spec.host.name, spec.service, pid, start_time,
                                                 str(log), spec.config_sha))
        self.layout.save_state(state)
        self.say(f"started {spec.service} on {spec.host.name} (pid {pid})")

    def _reap_postmaster(self, host: Host) -> None:
        """A postmaster left by a Patroni that died would refuse a second start: stop it."""
        pid = procs.postmaster_pid(self.layout.pg_data(host.name))
        if pid is not None:
            procs.stop([(pid, None)], timeout=10.0)

    def _ensure_timings(self, secrets: dict[str, str]) -> None:
        """Bootstrap settings apply once; later changes to the inventory go through /config."""
        host = self.topo.hosts_running("postgres")[0]
        client = health.patroni_client(self.topo, host, ("patroni", secrets["restapi"]))
        want = {"ttl": self.topo.timings.ttl, "loop_wait": self.topo.timings.loop_wait,
                "retry_timeout": self.topo.timings.retry_timeout}
        have = client.config()
        if any(have.get(k) != v for k, v in want.items()):
            client.patch_config(want)
            self.say(f"Patroni timings set to ttl {want['ttl']} / loop_wait {want['loop_wait']}"
                     f" / retry_timeout {want['retry_timeout']}")

    def _ensure_app_database(self, primary: str, secrets: dict[str, str]) -> None:
        host = self.topo.hosts[primary]
        haproxy = next(h for h in self.topo.hosts_running("haproxy") if h.site == host.site)
        port = int_setting(self.topo, haproxy, "haproxy", "haproxy_primary_port")
        ensure_app_database(dsn(str(haproxy.address), port, "postgres", secrets["superuser"],
                                "postgres"), secrets["app"], secrets["owner"])
        # The schema owner migrates (the nodes' role cannot; they only check the version),
        # as `tenir db migrate` does on a production cluster.
        owner = dsn(str(haproxy.address), port, OWNER_USER, secrets["owner"], APP_DB)
        applied = asyncio.run(migrate(owner, app_role=APP_USER))
        if applied:
            self.say(f"schema migrations applied: {', '.join(applied)}")

    # --- down --------------------------------------------------------------------------------
    def down(self, keep_data: bool = False) -> None:
        state = self.layout.load_state()
        for service in reversed(SERVICE_ORDER):
            recs = [r for r in state.records if r.service == service]
            pids: list[tuple[int, int | None]] = [(r.pid, r.start_time) for r in recs]
            procs.stop(pids, timeout=20.0 if service == "patroni" else 5.0)
            if service == "patroni":
                masters = [procs.postmaster_pid(self.layout.pg_data(r.host)) for r in recs]
                procs.stop([(p, None) for p in masters if p is not None], timeout=10.0)
        self._clear(remove_data=not keep_data)
        if keep_data:
            self.layout.save_state(LabState(inventory=str(Path(self.topo.source).resolve()),
                                            keep_data=True, coordination=state.coordination))
        self.say("lab down" + (" (data kept)" if keep_data else ""))

    def _clear(self, remove_data: bool) -> None:
        """Kill whatever still runs inside the lab's namespaces, remove them and the links."""
        for ns in netns.list_namespaces():
            pids = netns.namespace_pids(ns)
            for pid in pids:
                procs.signal_process(pid, signal.SIGKILL)
            procs.wait_gone([(p, None) for p in pids], 5.0)
            netns.delete_namespace(ns)
        netns.delete_links()
        if remove_data:
            self.layout.remove_all()
        elif self.layout.state_file.exists():
            self.layout.state_file.unlink()

    # --- operations on a running lab ---------------------------------------------------------
    def kill_site(self, site: str) -> list[int]:
        """SIGKILL every process of every host of ``site`` (as a power cut would)."""
        if site not in self.topo.sites:
            raise LabError(f"unknown site {site!r}; sites: {', '.join(self.topo.sites)}")
        killed: list[int] = []
        for host in self.topo.site_hosts(site):
            for pid in netns.namespace_pids(netns.namespace_name(host.name)):
                if procs.signal_process(pid, signal.SIGKILL):
                    killed.append(pid)
        procs.wait_gone([(p, None) for p in killed], 5.0)
        return killed

    def status(self) -> list[HostStatus]:
        state = self.layout.load_state()
        existing = set(netns.list_namespaces())
        out = []
        for host in self.topo.hosts.values():
            ns = netns.namespace_name(host.name)
            services = []
            for service in SERVICE_ORDER:
                if not runs_here(self.topo, host, service):
                    continue
                rec = next((r for r in state.records
                            if r.host == host.name and r.service == service), None)
                running = rec is not None and procs.is_running(rec.pid, rec.start_time)
                services.append(ServiceStatus(service, rec.pid if rec else None, running))
                if service == "patroni":
                    pm = procs.postmaster_pid(self.layout.pg_data(host.name))
                    services.append(ServiceStatus("postgres", pm, pm is not None))
            out.append(HostStatus(host.name, host.site, ns, str(host.address), ns in existing,
                                  tuple(services)))
        return out
