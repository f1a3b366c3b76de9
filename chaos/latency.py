"""Latency and loss between network namespaces, on a kernel without ``sch_netem``.

``DegradedLink`` is a fault paired with its heal (see :mod:`chaos.faults`): in each namespace
that sends on a delayed path it starts a :mod:`chaos.nfqueue` delayer (one process per
namespace), then adds, in an iptables chain of its own hooked to OUTPUT, one
``-d DEST -j NFQUEUE --queue-num N --queue-bypass`` rule per destination. The heal removes the
rules first (no new packet is queued), then stops the delayers (what they hold is released).
``--queue-bypass``: if a delayer dies, packets pass undelayed, the link is never cut by it.

A path is one direction; :func:`between_sites` builds both directions of each pair of sites
from a round-trip time (half each way)::

    sites = {"paris": Side(("ns-p1", "ns-p2"), ("10.0.1.1", "10.0.1.2")), ...}
    fault = DegradedLink(between_sites(sites, {("paris", "marseille"): 10.0,
                                               ("paris", "witness"): 15.0,
                                               ("marseille", "witness"): 15.0}))
    with faulted(fault): ...

The way a command runs inside a namespace is a :class:`NamespaceRunner` (``ip netns exec`` by
default), so that the same fault works when the hosts become machines (``nsenter`` on the
machine's leader PID, for example).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from chaos.nfqueue import QueueSpec

DEFAULT_CHAIN = "CHAOS_LATENCY"
FIRST_QUEUE = 3100
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class LatencyError(RuntimeError):
    pass


class NamespaceRunner(Protocol):
    def argv(self, namespace: str, command: Sequence[str]) -> list[str]:
        """The command line that runs ``command`` inside ``namespace``."""
        ...


class IpNetns:
    def argv(self, namespace: str, command: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", namespace, *command]


@dataclass(frozen=True)
class DelayedPath:
    """One direction: packets leaving ``namespace`` for ``destinations`` (IPv4 addresses or
    CIDRs) wait ``delay_ms`` and a fraction ``loss`` of them is dropped."""

    namespace: str
    destinations: tuple[str, ...]
    delay_ms: float
    loss: float = 0.0

    def __post_init__(self) -> None:
        if not self.namespace:
            raise ValueError("namespace: required")
        if not self.destinations:
            raise ValueError(f"{self.namespace}: destinations: at least one address")
        QueueSpec(0, self.delay_ms, self.loss)  # the same bounds as the delayer's


@dataclass(frozen=True)
class Side:
    """A site as the network sees it: the namespaces of its hosts and their addresses."""

    namespaces: tuple[str, ...]
    addresses: tuple[str, ...]


def between_sites(sites: Mapping[str, Side], rtt_ms: Mapping[tuple[str, str], float],
                  loss: float = 0.0) -> list[DelayedPath]:
    """Both directions of each pair in ``rtt_ms``: half the round trip each way, and the same
    ``loss`` each way (so a round trip is lost with about ``2 * loss``)."""
    paths = []
    for (a, b), rtt in rtt_ms.items():
        for src, dst in ((a, b), (b, a)):
            if src not in sites or dst not in sites:
                raise ValueError(f"rtt_ms: ({a!r}, {b!r}): unknown site "
                                 f"(known: {', '.join(sorted(sites))})")
            for ns in sites[src].namespaces:
                paths.append(DelayedPath(ns, sites[dst].addresses, rtt / 2, loss))
    return paths


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@dataclass
class _Delayer:
    namespace: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class DegradedLink:
    """Delay (and lose) packets on the given paths; see the module docstring."""

    paths: Sequence[DelayedPath]
    runner: NamespaceRunner = field(default_factory=IpNetns)
    chain: str = DEFAULT_CHAIN
    python: str = sys.executable
    seed: int | None = None
    last_logs: dict[str, str] = field(default_factory=dict)  # the delayers' lines, at heal
    _delayers: list[_Delayer] = field(default_factory=list)
    _workdir: Path | None = None

    def describe(self) -> str:
        parts = sorted({f"{p.namespace}->{','.join(p.destinations)} +{p.delay_ms:g} ms"
                        + (f" loss {p.loss:.0%}" if p.loss else "") for p in self.paths})
        return "delay " + "; ".join(parts)

    def _queues(self) -> dict[str, dict[tuple[float, float], int]]:
        """Per namespace, a queue number per distinct (delay, loss)."""
        out: dict[str, dict[tuple[float, float], int]] = {}
        for p in self.paths:
            per = out.setdefault(p.namespace, {})
            per.setdefault((p.delay_ms, p.loss), FIRST_QUEUE + len(per))
        return out

    def _ipt(self, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
        return _run(self.runner.argv(ns, ["iptables", "-w", "5", *args]))

    def inject(self) -> None:
        if self._delayers:
            raise LatencyError("already injected")
        self._workdir = Path(tempfile.mkdtemp(prefix="chaos-latency-"))
        queues = self._queues()
        try:
            for ns, per in queues.items():
                self._start(ns, [QueueSpec(num, d, loss) for (d, loss), num in per.items()])
            for ns in queues:
                self._ipt(ns, "-N", self.chain)  # may exist from an earlier heal that failed
                self._ipt(ns, "-F", self.chain)
                if self._ipt(ns, "-C", "OUTPUT", "-j", self.chain).returncode != 0:
                    self._must(ns, "-I", "OUTPUT", "-j", self.chain)
            for p in self.paths:
                num = queues[p.namespace][(p.delay_ms, p.loss)]
                for dest in p.destinations:
                    self._must(p.namespace, "-A", self.chain, "-d", dest, "-j", "NFQUEUE",
                               "--queue-num", str(num), "--queue-bypass")
        except BaseException:
            self.heal()
            raise

    def _must(self, ns: str, *args: str) -> None:
        done = self._ipt(ns, *args)
        if done.returncode != 0:
            raise LatencyError(f"{ns}: iptables {' '.join(args)}: {done.stderr.strip()}")

    def _start(self, ns: str, specs: list[QueueSpec]) -> None:
        assert self._workdir is not None
        log = self._workdir / f"{ns}.log"
        cmd = [self.python, "-m", "chaos.nfqueue", *(a for s in specs
                                                      for a in ("--queue", s.arg()))]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        with open(log, "wb") as out:
            proc = subprocess.Popen(self.runner.argv(ns, cmd), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=_project_root())
        delayer = _Delayer(ns, proc, log)
        self._delayers.append(delayer)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while b"nfqueue_ready" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LatencyError(f"{ns}: the delayer did not start: "
                                   f"{log.read_text(errors='replace')[-500:]}")
            time.sleep(0.02)

    def heal(self) -> None:
        """Remove the rules, then stop the delayers; idempotent."""
        for ns in {p.namespace for p in self.paths}:
            while self._ipt(ns, "-D", "OUTPUT", "-j", self.chain).returncode == 0:
                pass
            self._ipt(ns, "-F", self.chain)
            self._ipt(ns, "-X", self.chain)
        for d in self._delayers:
            if d.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(d.process.pid, signal.SIGTERM)
                try:
                    d.process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(d.process.pid, signal.SIGKILL)
                    d.process.wait(STOP_TIMEOUT_S)
            self.last_logs[d.namespace] = d.log.read_text(errors="replace")
        self._delayers.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def delayer_pids(self) -> dict[str, int]:
        """The delayer process of each namespace (for CPU accounting)."""
        return {d.namespace: d.process.pid for d in self._delayers}


def _project_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


Latency = DegradedLink  # a degraded link without loss is plain latency
