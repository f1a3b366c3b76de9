"""A fake lab implementing the public operations the chaos faults and runner call
(``chaos.labops.LabOps``), and a fake firewall (``chaos.firewall.Firewall``), for unit tests
only. Both append what they were asked to one ordered ``log``; the lab keeps which services run
(a killed service comes back, as systemd's Restart= brings it, unless ``restarts`` is off), which
machines run, and a frozen set."""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cluster.lab.lab import runs_here
from cluster.topology import Topology

SERVICES = ("etcd", "zookeeper", "patroni", "haproxy", "carriers", "node")


@dataclass
class FakeLab:
    topo: Topology
    log: list[str] = field(default_factory=list)
    down: set[str] = field(default_factory=set)  # machines powered off
    stopped: set[tuple[str, str]] = field(default_factory=set)  # (host, service)
    frozen: set[tuple[str, str]] = field(default_factory=set)
    restarts: bool = True  # a killed service comes back (systemd's Restart=)
    run_answers: dict[str, str] = field(default_factory=dict)  # argv[0] -> stdout
    on_up: Callable[[], None] | None = None

    def _check(self, host: str, service: str) -> None:
        if host not in self.topo.hosts:
            raise RuntimeError(f"unknown host {host!r}")
        if service not in SERVICES or not runs_here(self.topo, self.topo.hosts[host], service):
            raise RuntimeError(f"{host} runs no {service}")
        if host in self.down:
            raise RuntimeError(f"machine {host} is not running")

    def up(self, timeout: float = 600.0, *, deploy_mode: str = "auto") -> list[str]:
        self.log.append(f"up {deploy_mode}")
        self.down.clear()
        if self.on_up is not None:
            self.on_up()
        return []

    def kill_site(self, site: str) -> list[str]:
        hosts = [h.name for h in self.topo.site_hosts(site) if h.name not in self.down]
        self.down |= set(hosts)
        self.log.append(f"kill_site {site}")
        return hosts

    def kill_service(self, host: str, service: str) -> None:
        self.signal_service(host, service, signal.SIGKILL)

    def signal_service(self, host: str, service: str, sig: signal.Signals) -> None:
        self._check(host, service)
        self.log.append(f"signal {host} {service} {sig.name}")
        if sig == signal.SIGSTOP:
            self.frozen.add((host, service))
        elif sig == signal.SIGCONT:
            self.frozen.discard((host, service))
        elif sig == signal.SIGKILL and not self.restarts:
            self.stopped.add((host, service))

    def stop_service(self, host: str, service: str) -> None:
        self._check(host, service)
        self.log.append(f"stop {host} {service}")
        self.stopped.add((host, service))

    def start_service(self, host: str, service: str) -> None:
        self._check(host, service)
        self.log.append(f"start {host} {service}")
        self.stopped.discard((host, service))

    def service_pid(self, host: str, service: str) -> int | None:
        self._check(host, service)
        return None if (host, service) in self.stopped else 1000 + len(host) + len(service)

    def run_on(self, host: str, argv: list[str], timeout: float = 60.0) -> str:
        if host in self.down:
            raise RuntimeError(f"machine {host} is not running")
        self.log.append(f"run_on {host} {' '.join(argv[:2])} ... {argv[-1]}")
        return self.run_answers.get(argv[0], "")


@dataclass
class FakeFirewall:
    log: list[str] = field(default_factory=list)
    rules: dict[str, list[str]] = field(default_factory=dict)  # namespace -> rules

    def drop_peers(self, namespace: str, peers: Sequence[str]) -> None:
        self.log.append(f"drop {namespace} {','.join(peers)}")
        self.rules.setdefault(namespace, []).extend(f"drop {p}" for p in peers)

    def silence(self, namespace: str, own: str, networks: Sequence[str]) -> None:
        self.log.append(f"silence {namespace} keep {own} drop {','.join(networks)}")
        self.rules.setdefault(namespace, []).extend(f"drop {n}" for n in networks)

    def clear(self, namespace: str) -> None:
        self.log.append(f"clear {namespace}")
        self.rules.pop(namespace, None)

    def holds_rules(self, namespace: str) -> bool:
        return namespace in self.rules
