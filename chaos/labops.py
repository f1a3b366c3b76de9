"""The lab's public operations, as the faults and the runner use them (``cluster.lab.lab.Lab``
implements them; unit tests give a fake that records the calls). Hosts are inventory host
names, services the lab's names: etcd, zookeeper, patroni, haproxy, carriers, node."""

from __future__ import annotations

import signal
from typing import Any, Protocol

from cluster.topology import Topology

HEAL_TIMEOUT_S = 240.0


class LabOps(Protocol):
    topo: Topology

    def up(self, timeout: float = ..., *, deploy_mode: str = ...) -> Any:
        """Boot what is not running, deploy (``auto``, ``always``, ``never``), wait healthy."""

    def kill_site(self, site: str) -> list[str]:
        """SIGKILL of each machine's init of ``site``: every process at once."""

    def kill_service(self, host: str, service: str) -> None:
        """kill -9 of the unit's main process (its Restart= policy brings it back)."""

    def signal_service(self, host: str, service: str, sig: signal.Signals) -> None: ...

    def stop_service(self, host: str, service: str) -> None: ...

    def start_service(self, host: str, service: str) -> None: ...

    def service_pid(self, host: str, service: str) -> int | None: ...

    def run_on(self, host: str, argv: list[str], timeout: float = ...) -> str: ...


def restore(lab: LabOps) -> None:
    """What a heal does once its own undoing is done: boot what is down and wait until the lab
    is whole and healthy, without deploying anything (``deploy_mode="never"``)."""
    lab.up(timeout=HEAL_TIMEOUT_S, deploy_mode="never")
