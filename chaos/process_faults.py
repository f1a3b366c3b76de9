"""Faults on one process of the lab, through its public operations: an alert node frozen (a
zombie), the PostgreSQL postmaster killed under a live Patroni, the coordination leader or one
member killed, the primary's Patroni stopped (a PostgreSQL failover, for the
``during-pg-failover`` moment). Each heal waits until the lab is whole again.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.labops import LabOps, restore
from cluster.lab.health import probe_coordination
from cluster.member_probe import MemberHealth
from cluster.settings import setting
from cluster.topology import Topology

Probe = Callable[[Topology], list[MemberHealth]]


@dataclass
class FreezeNode:
    """SIGSTOP of an alert node: it keeps its sockets and its in-memory batches but does
    nothing, past its membership and its batches' lease; the watchdog moves its work. SIGCONT
    wakes a zombie that believes it still holds them: whatever it then writes must be refused
    (fencing), and it must stop sending (its membership is stale)."""

    lab: LabOps
    host: str

    def describe(self) -> str:
        return f"freeze the alert node {self.host} (SIGSTOP), then wake it (SIGCONT)"

    def inject(self) -> None:
        if self.lab.service_pid(self.host, "node") is None:
            raise RuntimeError(f"the alert node on {self.host} was not running")
        self.lab.signal_service(self.host, "node", signal.SIGSTOP)

    def heal(self) -> None:
        self.lab.signal_service(self.host, "node", signal.SIGCONT)
        restore(self.lab)


# Runs on the machine as root: the postmaster's PID is the first line of postmaster.pid (else
# the oldest process named postgres of user postgres); it is killed as user postgres.
POSTMASTER_KILL = r"""set -eu
pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null || true)
case "$pid" in ''|*[!0-9]*) pid=$(pgrep -o -u postgres -x postgres || true) ;; esac
if [ -z "$pid" ]; then
  echo "no postmaster: neither $1/postmaster.pid nor ps name one" >&2; exit 3
fi
runuser -u postgres -- kill -9 "$pid"
echo "$pid"
"""


@dataclass
class KillPostmaster:
    """kill -9 of the PostgreSQL postmaster on ``host``, Patroni left alive: Patroni restarts
    PostgreSQL (crash recovery) while it holds the leader key, or the other site is promoted."""

    lab: LabOps
    host: str
    killed_pid: int | None = None

    def describe(self) -> str:
        pid = f" (pid {self.killed_pid})" if self.killed_pid is not None else ""
        return f"kill -9 the PostgreSQL postmaster on {self.host}{pid}, Patroni alive"

    def data_dir(self) -> str:
        host = self.lab.topo.hosts[self.host]
        return str(setting(self.lab.topo, host, "patroni", "patroni_data_dir"))

    def inject(self) -> None:
        out = self.lab.run_on(self.host, ["sh", "-c", POSTMASTER_KILL, "kill-postmaster",
                                          self.data_dir()])
        last = out.strip().splitlines()[-1] if out.strip() else ""
        if not last.isdigit():
            raise RuntimeError(f"{self.host}: the postmaster kill said {out.strip()!r}")
        self.killed_pid = int(last)

    def heal(self) -> None:
        restore(self.lab)


@dataclass
class KillCoordination:
    """kill -9 of a coordination member (etcd or ZooKeeper, the lab's): ``which`` is
    ``leader`` (found through the members' own health endpoints), ``follower`` (a member that
    does not lead, chosen by ``rng``) or ``witness`` (the member on the witness site). systemd
    restarts it; the heal waits until every member is healthy again."""

    lab: LabOps
    which: str
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    probe: Probe = probe_coordination
    victim: str | None = None

    def __post_init__(self) -> None:
        if self.which not in ("leader", "follower", "witness"):
            raise ValueError(f"which: leader, follower or witness, not {self.which!r}")

    def describe(self) -> str:
        service = self.lab.topo.coordination
        victim = f" ({self.victim})" if self.victim else ""
        return f"kill -9 the {service} {self.which}{victim}"

    def choose(self) -> str:
        health = self.probe(self.lab.topo)
        leaders = [h.name for h in health if h.leader]
        if self.which == "leader":
            if len(leaders) != 1:
                seen = ", ".join(f"{h.name}={'leader' if h.leader else h.error or 'ok'}"
                                 for h in health)
                raise RuntimeError(f"no single {self.lab.topo.coordination} leader: {seen}")
            return leaders[0]
        if self.which == "witness":
            names = [h.name for h in health
                     if not self.lab.topo.sites[self.lab.topo.hosts[h.name].site].is_datacenter]
        else:
            names = sorted(h.name for h in health if h.healthy and not h.leader)
        if not names:
            raise RuntimeError(f"no {self.lab.topo.coordination} {self.which} to kill")
        return self.rng.choice(sorted(names))

    def inject(self) -> None:
        self.victim = self.choose()
        self.lab.kill_service(self.victim, self.lab.topo.coordination)

    def heal(self) -> None:
        restore(self.lab)


@dataclass
class StopPatroni:
    """``systemctl stop patroni`` on the primary's host: Patroni stops PostgreSQL and gives up
    the leader key, and the synchronous standby is promoted. What the ``during-pg-failover``
    moment injects first; the heal starts it again (it rejoins as a standby)."""

    lab: LabOps
    host: str

    def describe(self) -> str:
        return f"stop Patroni on {self.host}: PostgreSQL fails over to the other site"

    def inject(self) -> None:
        self.lab.stop_service(self.host, "patroni")

    def heal(self) -> None:
        self.lab.start_service(self.host, "patroni")
        restore(self.lab)
