"""``tenir status`` as text, and what it finds not running.

Every line says what it means: an HAProxy line says where that HAProxy sends PostgreSQL clients
and why each other backend is held out (a replica is held out by design: only the primary
passes the health check); it never reads as HAProxy itself being down. :func:`problems` lists,
as sentences, what is not running or not as it should be; the command exits 1 when it finds
any. Lines are fitted to 80 columns by the caller (``cluster/textfit.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Status = Mapping[str, Any]


def _is_up(state: str) -> bool:
    return state.startswith("UP")


def _pg_member(status: Status, name: str) -> Mapping[str, Any] | None:
    return next((m for m in status["postgres"]["members"] if m["name"] == name), None)


def held_out_reason(status: Status, server: str, state: str) -> tuple[str, bool]:
    """Why HAProxy sends no client to ``server`` (whose HAProxy state is ``state``), and
    whether that is a problem."""
    primary = status["postgres"]["primary"]
    if state.startswith("DRAIN"):
        return "set to drain by an operator (a switchover under way?)", server == primary
    if state.startswith("MAINT"):
        return "set to maintenance by an operator", server == primary
    if server == primary:
        return "the primary, but it fails HAProxy's check", True
    member = _pg_member(status, server)
    if member is None:
        return "not listed by Patroni (PostgreSQL down?)", False
    if member["state"] not in ("running", "streaming"):
        return f"PostgreSQL {member['state']}", False
    role = member["role"].replace("_", " ")
    return f"a {role} (only the primary passes the check)", False


def haproxy_lines(status: Status) -> tuple[list[str], list[str]]:
    """The HAProxy section and its problems."""
    primary = status["postgres"]["primary"]
    by_host: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for h in status["haproxy"]:
        by_host.setdefault((h["site"], h["host"]), []).append(h)
    lines = ["haproxy: where each site's HAProxy sends PostgreSQL clients"]
    found: list[str] = []
    for (site, host), rows in by_host.items():
        which = f"HAProxy on {host} ({site})"
        lead = f"  on {host} ({site}):"
        broken = next((r for r in rows if r["server"] is None), None)
        if broken is not None:
            lines.append(f"{lead} statistics UNREACHABLE, routing unknown: "
                         f"{broken.get('error') or broken['state']}")
            found.append(f"{which}: statistics unreachable")
            continue
        up = [r["server"] for r in rows if _is_up(r["state"])]
        if up == [primary] and primary is not None:
            sessions = next(r["sessions"] for r in rows if r["server"] == primary)
            lines.append(f"{lead} to {primary}, the primary ({sessions} sessions)")
        elif not up:
            why = "there is no primary" if primary is None else f"{primary} fails it"
            lines.append(f"{lead} NOWHERE: no backend passes the check ({why})")
            found.append(f"{which} sends PostgreSQL clients nowhere")
        else:
            lines.append(f"{lead} to {' and '.join(up)}: NOT only to the primary "
                         f"({primary or 'none'})")
            found.append(f"{which} sends clients to {' and '.join(up)}, not only to the "
                         f"primary ({primary or 'none'})")
        for r in rows:
            if _is_up(r["state"]):
                continue
            reason, bad = held_out_reason(status, r["server"], r["state"])
            lines.append(f"    held out: {r['server']}, {reason}")
            if bad:
                found.append(f"{which} holds out {r['server']}: {reason}")
    if not by_host:
        lines.append("  no HAProxy in the inventory")
    return lines, found


def coordination_lines(status: Status) -> tuple[list[str], list[str]]:
    coord = status["coordination"]
    backend = coord["backend"]
    healthy = sum(1 for m in coord["members"] if m["healthy"])
    total = len(coord["members"])
    lines = [f"{backend}: {healthy} of {total} members healthy, quorum "
             f"{'yes' if coord['quorum'] else 'NO'}"]
    found = [] if coord["quorum"] else [f"{backend} has no quorum ({healthy} of {total} members "
                                        "healthy): no failover, no membership, no drain"]
    for m in coord["members"]:
        flags = ("healthy" if m["healthy"] else "DOWN") + (", leader" if m["leader"] else "")
        lines.append(f"  {m['name']:<16} {m['site']:<10} {m['address']:<15} {flags}")
        if not m["healthy"]:
            found.append(f"{backend} member {m['name']} ({m['site']}) is down")
    return lines, found


def postgres_lines(status: Status) -> tuple[list[str], list[str]]:
    pg = status["postgres"]
    if not pg.get("reachable", True):
        return (["postgres: state unknown, no Patroni REST API answered"],
                ["no Patroni REST API answered: PostgreSQL's state is unknown"])
    lag = "unknown" if pg["lag_bytes"] is None else f"{pg['lag_bytes']} bytes"
    lines = [f"postgres: primary {pg['primary'] or 'NONE'}, synchronous standby "
             f"{pg['sync_standby'] or 'NONE'}, lag {lag}"]
    found = []
    if pg["primary"] is None:
        found.append("PostgreSQL has no primary: no campaign write succeeds")
    if pg["sync_standby"] is None:
        found.append("PostgreSQL has no streaming synchronous standby")
    for m in pg["members"]:
        lines.append(f"  {m['name']:<16} {m['site'] or '?':<10} {m['role']:<13} "
                     f"{m['state']:<10} timeline {m['timeline']}")
        if m["state"] not in ("running", "streaming"):
            found.append(f"PostgreSQL {m['name']} is {m['state']}")
    return lines, found


def render_nodes(status: Status) -> list[str]:
    view = status["cluster_view"]
    if not view["reachable"]:
        return [f"alert nodes: UNREACHABLE ({'; '.join(view['errors'])})"]
    lines = [f"alert nodes (as seen by {view['from']}):"]
    drained = status["drained_sites"]
    for n in status["nodes"]:
        member = {True: "member", False: "NOT A MEMBER", None: "membership unknown"}[n["member"]]
        flags = "  drained" if drained and n["site"] in drained else ""
        leader = "  watchdog leader" if n["name"] == status["watchdog_leader"] else ""
        lines.append(f"  {n['name']:<16} {n['site'] or '?':<10} {member}{leader}{flags}")
    lines.append(f"watchdog leader: {status['watchdog_leader'] or 'unknown'}")
    lines.append("drained sites: " + ("unknown" if drained is None else
                                      ", ".join(drained) or "none"))
    campaigns = status["campaigns"]
    if campaigns is None:
        lines.append("batches in flight: unknown")
    elif not campaigns:
        lines.append("batches in flight: none")
    for c in campaigns or ():
        sites = ", ".join(f"{k} {v}" for k, v in c["by_site"].items())
        nodes = " ".join(f"{k}:{v}" for k, v in c["by_node"].items())
        lines.append(f"  campaign {c['id']}: {c['in_flight']} batches in flight ({sites})  "
                     f"{nodes}")
    lines += [f"  ! {e}" for e in view["errors"]]
    return lines


def render_drills(status: Status) -> list[str]:
    """Each drill kind: its interval, when it last ran, OVERDUE. Overdue is not a problem of
    the cluster (it runs): it is said, and counted, without changing the exit status."""
    part = status.get("drills") or {}
    drills = part.get("drills")
    if drills is None:
        return [f"drills: unknown ({part.get('error') or 'not read'})"]
    if not drills:
        return ["drills: no interval in the inventory (tenir_drill_intervals)"]
    overdue = [d["drill"] for d in drills if d["overdue"]]
    lines = [f"drills ({len(overdue)} overdue):" if overdue else "drills (none overdue):"]
    for d in drills:
        last = d.get("last_run")
        when = f"last {last['at'][:16]} {last['outcome']}" if last else "never run"
        flag = "  OVERDUE" if d["overdue"] else f"  due {d['due'][:10]}" if d.get("due") else ""
        lines.append(f"  {d['drill']:<22} {d['interval']:<12} {when}{flag}")
    return lines


def nodes_problems(status: Status) -> list[str]:
    view = status["cluster_view"]
    if not view["reachable"]:
        return ["no alert node answered"]
    found = [f"alert node {n['name']} ({n['site']}) is not a member of the coordination "
             "service" for n in status["nodes"] if n["member"] is False]
    if status["watchdog_leader"] is None:
        found.append("no watchdog leader")
    return found + [f"{view['from']} could not read: {e}" for e in view["errors"]]


def problems(status: Status) -> list[str]:
    """What is not running or not as it should be, one sentence each; empty when all is."""
    from cluster.cert_status import certificate_problems

    found = coordination_lines(status)[1] + postgres_lines(status)[1] + haproxy_lines(status)[1]
    found += certificate_problems(status.get("certificates") or [])
    return found + (nodes_problems(status) if "nodes" in status else [])


def render_table(status: Status) -> str:
    lines = [f"cluster {status['cluster']}  ({status['inventory']})", ""]
    lines += coordination_lines(status)[0] + [""] + postgres_lines(status)[0] + [""]
    lines += haproxy_lines(status)[0]
    if "nodes" in status:
        lines += ["", *render_nodes(status)]
    if "drills" in status:
        lines += ["", *render_drills(status)]
    if status.get("certificates"):
        from cluster.cert_status import certificate_lines

        lines += ["", *certificate_lines(status["certificates"])]
    found = status.get("problems", problems(status))
    lines.append("")
    if found:
        lines.append(f"{len(found)} problem{'s' if len(found) > 1 else ''}:")
        lines += [f"  - {p}" for p in found]
    else:
        lines.append("everything is running")
    return "\n".join(lines)
