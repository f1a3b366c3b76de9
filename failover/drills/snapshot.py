"""The cluster's state before and after, to prove that a dry run (or a plan) changed nothing:
``tenir drill snapshot OUT`` writes what can change, ``tenir drill compare BEFORE AFTER`` names
every difference (exit 1 if there is one).

What is kept: the coordination members' health and leader; PostgreSQL's members, roles, states
and timelines; what each HAProxy routes to and each server's admin state; the live alert nodes
and the channels their carriers work on; the drained sites; the campaigns (ids and states); the
drill keys of the coordination service (lock, abort, drains); on a lab, each service's PID (a
restart changes it), the chaos and drill iptables chains and the carrier simulators' settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from failover.drills.facts import Facts


def facts_state(f: Facts) -> dict[str, Any]:
    return {
        "coordination": sorted([m.name, m.site, m.healthy, m.leader] for m in f.coordination),
        "postgres": None if f.postgres is None else sorted(
            [m.name, m.role, m.state] for m in f.postgres),
        "haproxy": None if f.haproxy is None else {h: list(r) for h, r in
                                                   sorted(f.haproxy.items())},
        "nodes": None if f.nodes is None else sorted([n.name, n.site, sorted(n.channels)]
                                                     for n in f.nodes),
        "drained": None if f.drained is None else sorted(f.drained),
        "campaigns": None if f.campaigns is None else sorted([c.id, c.state]
                                                             for c in f.campaigns),
    }


def diff(before: Any, after: Any, path: str = "") -> list[str]:
    """Every path where ``after`` differs from ``before``."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in before:
                out.append(f"{where}: added {json.dumps(after[key], default=str)}")
            elif key not in after:
                out.append(f"{where}: removed (was {json.dumps(before[key], default=str)})")
            else:
                out += diff(before[key], after[key], where)
        return out
    if before != after:
        return [f"{path or '(root)'}: {json.dumps(before, default=str)} -> "
                f"{json.dumps(after, default=str)}"]
    return []


def write(state: dict[str, Any], out: Path) -> None:
    out.write_text(json.dumps(state, indent=2, sort_keys=True, default=str) + "\n",
                   encoding="utf-8")


def read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a snapshot")
    return data
