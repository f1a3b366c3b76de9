"""CPU and memory of process trees, read from /proc: what the loopback harness measures per
component (alert nodes, PostgreSQL with its backends, carrier simulators, etcd).

A tree's CPU is the utime+stime of every live process in it, plus the cutime+cstime of its
roots (children that ended and were reaped by them: a PostgreSQL backend that exited). Times
are in clock ticks (``os.sysconf('SC_CLK_TCK')``, 100 per second on Linux): 10 ms resolution,
fine for totals of seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    cpu_s: float  # utime + stime
    children_cpu_s: float  # cutime + cstime (reaped children)
    rss: int  # bytes


def read_stat(pid: int) -> ProcStat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] is state (field 3 of stat(5)); utime is field 14 -> index 11
    return ProcStat(pid, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK,
                    (int(fields[13]) + int(fields[14])) / CLK_TCK, int(fields[21]) * PAGE)


def all_stats() -> dict[int, ProcStat]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = read_stat(int(entry))
            if st is not None:
                out[st.pid] = st
    return out


def tree(roots: Iterable[int], stats: Mapping[int, ProcStat]) -> set[int]:
    """The roots and every descendant still alive."""
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    out: set[int] = set()
    todo = [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo.extend(children.get(pid, ()))
    return out


@dataclass(frozen=True)
class Usage:
    cpu_s: float
    rss: int


def usage(components: Mapping[str, Iterable[int]]) -> dict[str, Usage]:
    """component -> CPU seconds so far (live tree + reaped children of the roots) and RSS now.
    PostgreSQL's RSS counts shared buffers once per backend that touched them: an overstatement,
    reported as such."""
    stats = all_stats()
    out = {}
    for name, roots in components.items():
        roots = list(roots)
        pids = tree(roots, stats)
        cpu = sum(stats[p].cpu_s for p in pids) + sum(stats[r].children_cpu_s for r in roots
                                                      if r in stats)
        out[name] = Usage(cpu, sum(stats[p].rss for p in pids))
    return out
