"""Cutting links inside the lab's namespaces. The lab's machines live in the network namespaces
``tenir-<host>``, so iptables rules there cut their links (a machine cannot see or undo them).

Rules go into a chain of the chaos suite's own (``TENIR_CHAOS``), hooked to INPUT and OUTPUT of
each namespace it touches; ``clear`` unhooks and removes that chain and nothing else. The command
that runs inside a namespace is a :class:`chaos.latency.NamespaceRunner` (``ip netns exec``).

:class:`Firewall` is what the faults call, so that unit tests give them a recording fake.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chaos.latency import IpNetns, NamespaceRunner

CHAIN = "TENIR_CHAOS"


class Firewall(Protocol):
    def drop_peers(self, namespace: str, peers: Sequence[str]) -> None:
        """Drop every packet from or to ``peers`` (addresses or CIDRs), both directions."""

    def silence(self, namespace: str, own: str, networks: Sequence[str]) -> None:
        """Drop every packet from or to ``networks`` except the host's own traffic to itself
        (``own`` to ``own``): a machine that has lost power, as the others see it."""

    def clear(self, namespace: str) -> None:
        """Remove what ``drop_peers`` and ``silence`` added; idempotent."""

    def holds_rules(self, namespace: str) -> bool:
        """Whether the namespace still has the chain (a heal that did not run)."""


class FirewallError(RuntimeError):
    pass


@dataclass
class Iptables:
    runner: NamespaceRunner = field(default_factory=IpNetns)
    chain: str = CHAIN

    def _ipt(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.runner.argv(ns, ["iptables", "-w", "5", *args]),
                              capture_output=True, text=True, timeout=30, check=False)
        if check and done.returncode != 0:
            raise FirewallError(f"{ns}: iptables {' '.join(args)}: {done.stderr.strip()}")
        return done

    def _hook(self, ns: str) -> None:
        self._ipt(ns, "-N", self.chain, check=False)  # exists already after an earlier fault
        for hook in ("INPUT", "OUTPUT"):
            if self._ipt(ns, "-C", hook, "-j", self.chain, check=False).returncode != 0:
                self._ipt(ns, "-I", hook, "-j", self.chain)

    def drop_peers(self, namespace: str, peers: Sequence[str]) -> None:
        self._hook(namespace)
        for peer in peers:
            self._ipt(namespace, "-A", self.chain, "-s", peer, "-j", "DROP")
            self._ipt(namespace, "-A", self.chain, "-d", peer, "-j", "DROP")

    def silence(self, namespace: str, own: str, networks: Sequence[str]) -> None:
        self._hook(namespace)
        self._ipt(namespace, "-I", self.chain, "-s", own, "-d", own, "-j", "RETURN")
        for net in networks:
            self._ipt(namespace, "-A", self.chain, "-s", net, "-j", "DROP")
            self._ipt(namespace, "-A", self.chain, "-d", net, "-j", "DROP")

    def clear(self, namespace: str) -> None:
        for hook in ("INPUT", "OUTPUT"):
            while self._ipt(namespace, "-D", hook, "-j", self.chain, check=False).returncode == 0:
                pass
        self._ipt(namespace, "-F", self.chain, check=False)
        self._ipt(namespace, "-X", self.chain, check=False)

    def holds_rules(self, namespace: str) -> bool:
        if not os.path.exists(f"/run/netns/{namespace}"):
            return False
        return self._ipt(namespace, "-S", self.chain, check=False).returncode == 0
