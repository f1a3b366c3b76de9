"""The embedded lab: two datacenter sites and a witness on one machine. Every inventory host is
a systemd-nspawn machine (``machines.py``) in its own network namespace (``netns.py``), all
built on one Debian image (``image.py``), and tenir is deployed onto them by ``ansible/site.yml``
(``deploy.py``), exactly as onto production machines.

``up`` is idempotent: it boots the machines that are not running (a killed site comes back with
its disk, and its own systemd starts its services), then runs ``site.yml``, which on a healthy
lab changes nothing. On a lab of which no machine runs, it first clears what an interrupted lab
left behind. ``down`` powers the machines off (or kills them when their disks go too) and removes
mounts, namespaces, links and, unless asked to keep it, data.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.lab import deploy, health, image, machines, netns, procs
from cluster.lab.layout import LabState, Layout, lab_dir
from cluster.lab.seed import seed_lab
from cluster.topology import COORDINATION_BACKENDS, Host, Topology
from nodes.users import ROLES, token_digest

Say = Callable[[str], None]
REQUIRED_BINARIES = ("ip", "systemd-nspawn", "debootstrap", "nsenter", "ssh", "ssh-keygen",
                     "journalctl", "mount")
# Inventory group -> the systemd unit that implements it on a machine.
UNIT_OF_GROUP = {"etcd": "etcd", "zookeeper": "zookeeper", "postgres": "patroni",
                 "haproxy": "haproxy", "carriers": "tenir-carriers",
                 "alert_nodes": "tenir-node"}
# The lab's service names (as faults and tests name them) -> inventory group.
GROUP_OF_SERVICE = {"etcd": "etcd", "zookeeper": "zookeeper", "patroni": "postgres",
                    "haproxy": "haproxy", "carriers": "carriers", "node": "alert_nodes"}
SERVICE_ORDER = ("etcd", "zookeeper", "patroni", "haproxy", "carriers", "node")
PG_DATA = "/var/lib/postgresql/15/tenir"  # the patroni role's patroni_data_dir


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    unit: str
    pid: int | None  # as the host sees it
    running: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "pid": self.pid, "running": self.running}


@dataclass(frozen=True)
class HostStatus:
    name: str
    site: str
    namespace: str
    address: str
    namespace_exists: bool
    machine_running: bool
    services: tuple[ServiceStatus, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "site": self.site, "namespace": self.namespace,
            "address": self.address, "namespace_exists": self.namespace_exists,
            "machine_running": self.machine_running,
            "services": [s.to_json() for s in self.services],
        }


def _quiet(_: str) -> None:
    return None


def unit_of(service: str) -> str:
    return UNIT_OF_GROUP[GROUP_OF_SERVICE[service]]


def runs_here(topo: Topology, host: Host, service: str) -> bool:
    """Whether the lab runs ``service`` on ``host``: its group holds the host, and a
    coordination service runs only if it is the one the topology uses."""
    if service in COORDINATION_BACKENDS and service != topo.coordination:
        return False
    return host.runs(GROUP_OF_SERVICE[service])


def lab_coordination(topo: Topology, layout: Layout | None = None) -> str | None:
    """The coordination backend the lab of this inventory runs with (or kept data for), or None
    when no such lab exists: commands against a running lab then talk to the right service."""
    state = (layout or Layout(lab_dir())).load_state()
    if not state.coordination or not state.inventory:
        return None
    if Path(state.inventory).resolve() != Path(topo.source).resolve():
        return None
    if state.keep_data or any(m.running() for m in state.machines):
        return state.coordination
    return None


BOOT_ATTEMPTS = 5  # a machine whose nspawn exits while booting is booted again (_wait_booted)
# How long a machine's boot may take: its systemd has finished starting up once every unit has
# started. A PostgreSQL member's Patroni unit counts as started once PostgreSQL runs (its
# ExecStartPost waits up to 600 s, TimeoutStartSec 660): after a power cut of the primary's
# site, an old primary whose pg_rewind fails is removed and copied again from the new primary,
# which took more than 120 s on the lab (the chaos matrix, 2026-11-30).
BOOT_WAIT_S = 120.0
BOOT_WAIT_POSTGRES_S = 660.0


class Lab:
    def __init__(self, topo: Topology, layout: Layout | None = None, say: Say = _quiet) -> None:
        if topo.lab_network is None or topo.lab_bridge_address is None:
            raise LabError(f"{topo.source}: all.vars.tenir_lab_network and "
                           "tenir_lab_bridge_address are needed to run it as a lab")
        self.topo = topo
        self.layout = layout or Layout(lab_dir())
        self.say = say
        self.last_run: deploy.PlaybookRun | None = None
        self.image_build_s: float | None = None
        self._state_lock = threading.Lock()  # boots waited for in threads update the state

    # --- checks ------------------------------------------------------------------------------
    def preflight(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab creates network namespaces and machines: run it as root")
        missing = [b for b in REQUIRED_BINARIES if shutil.which(b) is None]
        if missing:
            raise LabError(f"missing programs: {', '.join(missing)} (run 'make install')")

    @property
    def inventory_dir(self) -> Path:
        source = Path(self.topo.source)
        return source if source.is_dir() else source.parent

    # --- up ----------------------------------------------------------------------------------
    def up(self, timeout: float = 600.0, *, deploy_mode: str = "auto") -> list[HostStatus]:
        """Boot what is not running, deploy, wait until healthy. ``deploy_mode``: ``auto`` runs
        ``site.yml`` unless the last successful run deployed exactly this (same playbooks,
        roles, inventory, sources and secrets: a killed site that boots again is then only
        verified, its own systemd having started its services); ``always`` runs it anyway (a
        second run then changes nothing); ``never`` only boots and verifies."""
        if deploy_mode not in ("auto", "always", "never"):
            raise LabError(f"deploy mode {deploy_mode!r}: auto, always or never")
        self.preflight()
        started = time.monotonic()
        state = self.layout.load_state()
        alive = [m for m in state.machines if m.running()]
        if ((alive or state.keep_data) and state.coordination
                and state.coordination != self.topo.coordination):
            what = "runs" if alive else "kept its data"
            raise LabError(f"the lab {what} with {state.coordination} as its coordination "
                           f"service, not {self.topo.coordination}: run 'tenir lab down' first "
                           "(a Patroni cluster does not change its DCS)")
        if not alive:
            leftovers = (netns.list_namespaces() or netns.list_links()
                         or self.layout.root.exists())
            if leftovers:
                self.say("clearing what an earlier lab left behind"
                         + (" (keeping its data)" if state.keep_data else ""))
            self._clear(state, remove_data=not state.keep_data)
            state = LabState(keep_data=state.keep_data)
        else:
            state.machines = alive
        state.inventory = str(Path(self.topo.source).resolve())
        state.coordination = self.topo.coordination
        state.keep_data = False
        self.layout.save_state(state)

        img, self.image_build_s = image.ensure_image(self.say)
        image.remove_unused(img, {Path(m.image) for m in state.machines}, self.say)
        secrets = self.layout.load_or_create_secrets()
        pubkey = self.layout.ensure_ssh_key()
        assert self.topo.lab_network is not None and self.topo.lab_bridge_address is not None
        netns.ensure_bridge(self.topo.lab_bridge_address, self.topo.lab_network)
        for i, host in enumerate(self.topo.hosts.values()):
            netns.ensure_namespace(netns.Attachment(
                host.name, netns.namespace_name(host.name), f"{netns.VETH_PREFIX}{i}",
                host.address), self.topo.lab_network)
        self._boot_missing(state, img, pubkey)
        self.say(f"machines running in {time.monotonic() - started:.1f} s")

        digest = deploy.deployment_digest(self.inventory_dir, self._values(secrets, ""))
        stopped = [] if deploy_mode != "auto" or state.deployed != digest else self._stopped()
        if stopped:
            self.say(f"not running: {', '.join(stopped)}; site.yml starts them")
        if deploy_mode == "always" or (deploy_mode == "auto" and (state.deployed != digest
                                                                  or stopped)):
            self.deploy(secrets, timeout=max(60.0, timeout - (time.monotonic() - started)))
            state.deployed = digest
            self.layout.save_state(state)
        else:
            self.say("the machines run what site.yml last deployed: verifying their health")

        def remaining() -> float:
            return max(10.0, timeout - (time.monotonic() - started))

        health.wait_coordination(self.topo, remaining())
        view = health.wait_replication(self.topo, remaining())
        assert view.primary is not None
        health.wait_haproxy_routes_to(self.topo, view.primary, remaining())
        health.wait_carriers(self.topo, remaining())
        health.wait_nodes(self.topo, remaining())
        seed_lab(self.topo, secrets)
        self.say(f"lab healthy in {time.monotonic() - started:.1f} s; PostgreSQL primary: "
                 f"{view.primary}, synchronous standby: {view.sync_standby}")
        return self.status()

    def _boot_missing(self, state: LabState, img: Path, pubkey: str) -> None:
        hosts = list(self.topo.hosts.values())
        addresses = [(h.name, h.address) for h in hosts]
        booted: list[machines.MachineRecord] = []
        for host in hosts:
            rec = state.machine(host.name)
            if rec is not None and rec.running():
                continue
            paths = self.layout.machine(host.name)
            lower = Path(rec.image) if rec is not None and Path(rec.image).is_dir() else img
            new_disk = not paths.upper.exists() or not any(paths.upper.iterdir())
            machines.mount_overlay(paths, lower)
            if new_disk:
                machines.seed_disk(paths, host.name, addresses, pubkey)
            booted.append(self._boot(state, host.name, lower))
        if booted:
            self.say(f"booting {len(booted)} machine(s): {', '.join(m.host for m in booted)}")
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(booted)) as pool:
                list(pool.map(lambda m: self._wait_booted(state, m), booted))
        keys = {}
        for host in hosts:
            key = machines.host_key(self.layout.machine(host.name))
            if key is None:
                raise LabError(f"machine {host.name} has no SSH host key")
            keys[str(host.address)] = key
        self.layout.write_known_hosts(keys)

    def _boot(self, state: LabState, host: str, image: Path) -> machines.MachineRecord:
        """Boot ``host``'s machine (clearing what a dead one left in /run) and record it."""
        machines.clear_stale(host)
        rec = machines.boot(self.layout.machine(host), host, netns.namespace_name(host), image)
        with self._state_lock:
            state.machines = [m for m in state.machines if m.host != host] + [rec]
            self.layout.save_state(state)
        return rec

    def _wait_booted(self, state: LabState, rec: machines.MachineRecord) -> None:
        """Wait for a machine's boot. One whose nspawn exits while booting (after a power cut
        the dead one's propagation directory may still be in /run, or its mounts not yet gone)
        is booted again, four times at most, 0.5 s then twice as long apart (7.5 s in all: a
        drill's power-on met a boot that failed three times within a second and worked 7 s
        later), saying so with its console's last lines."""
        paths = self.layout.machine(rec.host)
        host = self.topo.hosts.get(rec.host)
        wait_s = (BOOT_WAIT_POSTGRES_S if host is not None and host.runs("postgres")
                  else BOOT_WAIT_S)
        tail = ""
        for attempt in range(BOOT_ATTEMPTS):
            if attempt:
                time.sleep(0.5 * 2 ** (attempt - 1))
                rec = self._boot(state, rec.host, Path(rec.image))
            try:
                machines.wait_booted(rec, wait_s, slow_after=BOOT_WAIT_S, say=self.say)
                return
            except machines.MachineError as exc:
                if rec.running():
                    raise
                tail = machines.console_tail(paths, 3)
                self.say(f"{exc} (console: {tail})")
        raise LabError(f"machine {rec.host} does not boot after {BOOT_ATTEMPTS} attempts: see "
                       f"{paths.console} (last lines: {tail})")

    def deploy(self, secrets: dict[str, str], *, timeout: float = 1800.0,
               playbook: str = "site.yml", limit: str | None = None,
               extra_vars: dict[str, Any] | None = None,
               version: str | None = None) -> deploy.PlaybookRun:
        """Run a playbook of ``ansible/`` against the lab, as an operator would. ``version``:
        the tenir version to build and deploy (default: this checkout's lab version; a rolling
        upgrade names another)."""
        wheelhouse, version = deploy.build_wheelhouse(self.say, version=version)
        assert self.topo.lab_bridge_address is not None
        with deploy.serve_directory(wheelhouse, str(self.topo.lab_bridge_address)) as url:
            values = {**self._values(secrets, url), "tenir_version": version,
                      **(extra_vars or {})}
            deploy.write_extra_vars(self.layout.extra_vars_file, values)
            run = deploy.run_playbook(playbook, self.inventory_dir, [self.layout.extra_vars_file],
                                      self.layout.ssh_key, self.layout.known_hosts,
                                      self.layout.ansible_dir, self.say, limit=limit,
                                      timeout=timeout)
        self.last_run = run
        if not run.ok:
            excerpt = deploy.failure_excerpt(run)
            for host, unit in deploy.failed_services(excerpt)[:3]:
                if host in self.topo.hosts:
                    tail = machines.journal(self.layout.machine(host), unit, lines=25)
                    excerpt += f"\n--- journal of {unit} on {host} ---\n{tail.rstrip()}"
            raise LabError(f"{run.summary()}; log {run.log}:\n{excerpt}")
        return run

    def _stopped(self) -> list[str]:
        """``service@host`` of every service the lab runs that its machine's systemd does not
        have active (a unit stopped by hand, or that failed): the playbook starts them."""
        state = self.layout.load_state()
        out = []
        for host in self.topo.hosts.values():
            rec = state.machine(host.name)
            units = {unit_of(s): s for s in SERVICE_ORDER if runs_here(self.topo, host, s)}
            if rec is None or not units:
                continue
            proc = machines.run(rec, ["systemctl", "is-active", *units])
            states = proc.stdout.split()
            out += [f"{units[u]}@{host.name}" for u, st in zip(units, states, strict=False)
                    if st not in ("active", "activating", "reloading")]
        return out

    def _values(self, secrets: dict[str, str], wheelhouse_url: str) -> dict[str, Any]:
        """The extra variables the lab gives every playbook run."""
        values: dict[str, Any] = {
            **self.layout.secret_variables(secrets),
            "tenir_package_find_links": [wheelhouse_url] if wheelhouse_url else [],
            "patroni_pip_find_links": [wheelhouse_url] if wheelhouse_url else [],
            "tenir_coordination": self.topo.coordination,
            "tenir_evidence_keys_dir": str(self.layout.root / "evidence-keys"),
            # The cluster's CA and every host's certificate (ansible/pki.yml makes them there);
            # the CLI trusts that CA and presents tenir-operator's certificate.
            "tenir_pki_dir": str(self.layout.pki_dir),
            # One lab user per role; the CLI holds the tokens, the nodes only their digests.
            "tenir_node_users": [{"name": f"lab-{role}", "role": role,
                                  "token_sha256": token_digest(secrets[f"token_{role}"])}
                                 for role in ROLES],
        }
        return values

    # --- down --------------------------------------------------------------------------------
    def down(self, keep_data: bool = False) -> None:
        state = self.layout.load_state()
        running = [m for m in state.machines if m.running()]
        if running:
            how = "powering off" if keep_data else "stopping"
            self.say(f"{how} {len(running)} machine(s)")
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(running)) as pool:
                if keep_data:
                    list(pool.map(lambda m: machines.poweroff(m, 60.0), running))
                else:
                    list(pool.map(machines.kill, running))
        self._clear(state, remove_data=not keep_data)
        if keep_data:
            self.layout.save_state(LabState(inventory=str(Path(self.topo.source).resolve()),
                                            keep_data=True, coordination=state.coordination,
                                            machines=state.machines))
        self.say("lab down" + (" (data kept)" if keep_data else ""))

    def _clear(self, state: LabState, remove_data: bool) -> None:
        """Kill whatever still runs inside the lab's namespaces, unmount the machines' disks,
        remove namespaces and links, and the data unless it is kept."""
        for rec in state.machines:
            if rec.running():
                machines.kill(rec)
        stray = [pid for ns in netns.list_namespaces() for pid in netns.namespace_pids(ns)]
        for pid in stray:
            procs.signal_process(pid, signal.SIGKILL)
        procs.wait_gone([(p, None) for p in stray], 10.0)
        machines_dir = self.layout.root / "machines"
        if machines_dir.is_dir():
            for entry in machines_dir.iterdir():
                machines.unmount(machines.MachinePaths(entry))
        for ns in netns.list_namespaces():
            netns.delete_namespace(ns)
        netns.delete_links()
        if remove_data:
            if machines_dir.is_dir():
                self.say("removing the machines' disks")
            self.layout.remove_all()
        elif self.layout.state_file.exists():
            self.layout.state_file.unlink()

    # --- operations on a running lab ---------------------------------------------------------
    def machine(self, host: str) -> machines.MachineRecord:
        rec = self.layout.load_state().machine(host)
        if rec is None or not rec.running():
            raise LabError(f"machine {host} is not running")
        return rec

    def kill_site(self, site: str) -> list[str]:
        """A power cut of every machine of ``site``; returns the hosts cut."""
        if site not in self.topo.sites:
            raise LabError(f"unknown site {site!r}; sites: {', '.join(self.topo.sites)}")
        state = self.layout.load_state()
        cut = []
        for host in self.topo.site_hosts(site):
            rec = state.machine(host.name)
            if rec is not None and machines.kill(rec):
                cut.append(host.name)
        return cut

    def _unit_for(self, host: str, service: str) -> str:
        h = self.topo.hosts.get(host)
        if h is None:
            raise LabError(f"unknown host {host!r}")
        if service not in GROUP_OF_SERVICE or not runs_here(self.topo, h, service):
            raise LabError(f"{host} runs no {service}")
        return unit_of(service)

    def signal_service(self, host: str, service: str, sig: signal.Signals) -> None:
        """Send ``sig`` to the main process of ``service`` on ``host`` (systemd's unit)."""
        unit = self._unit_for(host, service)
        machines.run(self.machine(host), ["systemctl", "kill", "--kill-whom=main",
                                          f"--signal={sig.name}", unit], check=True)

    def kill_service(self, host: str, service: str) -> None:
        """kill -9 of the service's main process; its unit's restart policy brings it back."""
        self.signal_service(host, service, signal.SIGKILL)

    def stop_service(self, host: str, service: str) -> None:
        machines.run(self.machine(host), ["systemctl", "stop", self._unit_for(host, service)],
                     timeout=120, check=True)

    def start_service(self, host: str, service: str) -> None:
        machines.run(self.machine(host), ["systemctl", "start", self._unit_for(host, service)],
                     timeout=120, check=True)

    def service_pid(self, host: str, service: str) -> int | None:
        """The main PID of the service as the host sees it, or None when it does not run."""
        rec = self.machine(host)
        proc = machines.run(rec, ["systemctl", "show", "-p", "MainPID", "--value",
                                  self._unit_for(host, service)])
        inner = int(proc.stdout.strip() or 0)
        return machines.host_pid(rec, inner) if inner else None

    def postmaster_pid(self, host: str) -> int | None:
        """PostgreSQL's postmaster under Patroni on ``host`` (host PID), or None."""
        rec = self.machine(host)
        proc = machines.run(rec, ["sh", "-c", f"head -1 {PG_DATA}/postmaster.pid 2>/dev/null"])
        inner = proc.stdout.strip()
        if not inner.isdigit():
            return None
        pid = machines.host_pid(rec, int(inner))
        if pid is None:
            return None
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return None
        return pid if comm in ("postgres", "postmaster") else None

    def service_log(self, host: str, service: str) -> str:
        """The service's journal on that machine (readable after the machine died too)."""
        return machines.journal(self.layout.machine(host), self._unit_for(host, service))

    def run_on(self, host: str, argv: list[str], timeout: float = 60.0) -> str:
        return machines.run(self.machine(host), argv, timeout=timeout, check=True).stdout

    def status(self) -> list[HostStatus]:
        """Each host's machine and services. A machine that stops while it is looked at (a
        drill's power cut) shows its services as not running; it never raises."""
        state = self.layout.load_state()
        existing = set(netns.list_namespaces())
        out = []
        for host in self.topo.hosts.values():
            ns = netns.namespace_name(host.name)
            rec = state.machine(host.name)
            running = rec is not None and rec.running()
            services = []
            for service in SERVICE_ORDER:
                if not runs_here(self.topo, host, service):
                    continue
                unit = unit_of(service)
                pid = None
                if running:
                    assert rec is not None
                    try:
                        pid = self.service_pid(host.name, service)
                    except (LabError, machines.MachineError):
                        pid = None
                services.append(ServiceStatus(service, unit, pid, pid is not None))
                if service == "patroni":
                    pm = None
                    if running:  # the machine may stop between the check and the look
                        try:
                            pm = self.postmaster_pid(host.name)
                        except (LabError, machines.MachineError):
                            pm = None
                    services.append(ServiceStatus("postgres", unit, pm, pm is not None))
            out.append(HostStatus(host.name, host.site, ns, str(host.address), ns in existing,
                                  running, tuple(services)))
        return out
