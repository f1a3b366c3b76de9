"""Three throwaway network namespaces joined two by two with veth pairs, for proving
:mod:`chaos.latency` without the lab (the test and ``bench/latency_cpu.py``).

``with triangle("tdly-1234") as net:`` creates ``tdly-1234-a``, ``-b`` and ``-c``, each pair on
its own /30 of 10.251.X.0 (nothing routes out of them), and deletes them on exit, by name.
Names must start with ``tdly-``: this module never creates or deletes anything else.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

PREFIX = "tdly-"
_NAME = re.compile(r"^tdly-[a-z0-9]{1,6}$")
_PAIRS = (("a", "b"), ("a", "c"), ("b", "c"))


class ScratchNetError(RuntimeError):
    pass


@dataclass(frozen=True)
class Triangle:
    """``addr[(x, y)]``: the address of ``x`` on its link to ``y``."""

    namespaces: dict[str, str]  # "a" -> "tdly-1234-a"
    addr: dict[tuple[str, str], str]

    def addresses_of(self, node: str) -> tuple[str, ...]:
        return tuple(a for (x, _y), a in sorted(self.addr.items()) if x == node)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=False)
    if done.returncode != 0:
        raise ScratchNetError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@contextlib.contextmanager
def triangle(base: str) -> Iterator[Triangle]:
    if not _NAME.match(base):
        raise ValueError(f"{base!r}: must look like tdly-XXXX (at most 6 letters or digits)")
    tag = base.removeprefix(PREFIX)
    names = {n: f"{base}-{n}" for n in "abc"}
    addr: dict[tuple[str, str], str] = {}
    made: list[str] = []
    try:
        for ns in names.values():
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        for i, (x, y) in enumerate(_PAIRS):
            ix, iy = f"d{tag}{x}{y}", f"d{tag}{y}{x}"
            _ip("link", "add", ix, "netns", names[x], "type", "veth", "peer", "name", iy,
                "netns", names[y])
            addr[(x, y)], addr[(y, x)] = f"10.251.{i}.1", f"10.251.{i}.2"
            for node, ifname, peer in ((x, ix, y), (y, iy, x)):
                _ip("-n", names[node], "addr", "add", f"{addr[(node, peer)]}/30", "dev", ifname)
                _ip("-n", names[node], "link", "set", ifname, "up")
        yield Triangle(names, addr)
    finally:
        for ns in made:  # deleting a namespace deletes its veth ends
            with contextlib.suppress(ScratchNetError):
                _ip("netns", "del", ns)
