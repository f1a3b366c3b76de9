"""``tenir status``: one view of the cluster, read from the coordination service (etcd or
ZooKeeper), Patroni's REST API and HAProxy's read-only statistics (HTTPS) at the addresses the
inventory gives, the certificates every TLS listener presents (``cluster/cert_status.py``),
and from the alert nodes' cluster view (``GET /api/v1/cluster`` of the first node that
answers, with the auditor's token): which nodes are members, the watchdog leader, the
drained sites and the batches each node holds per campaign. Works against any inventory;
when no node answers, the rest is still shown. ``problems`` lists what is not running
(``cluster/status_render.py``)."""

from __future__ import annotations

from typing import Any

from cluster import cert_status
from cluster.httpjson import HttpError, request_json
from cluster.lab.health import (
    cli_tls_context,
    haproxy_stats,
    node_url,
    patroni_view,
    probe_coordination,
)
from cluster.member_probe import has_quorum
from cluster.node_api import ApiError, operator_token
from cluster.status_render import problems
from cluster.topology import Topology
from replication.haproxy import HAProxyError

NODE_TIMEOUT_S = 4.0  # a node answers within its 3 s bound per part


def fetch_cluster_view(topo: Topology, token: str | None = None,
                       timeout: float = NODE_TIMEOUT_S) -> dict[str, Any]:
    """``GET /api/v1/cluster`` from the alert nodes, in inventory order: the first complete
    answer (no ``errors``), else the first answer. Raises :class:`ApiError` if none answers."""
    token = token or operator_token("auditor")
    first: dict[str, Any] | None = None
    problems = []
    for host in topo.hosts_running("alert_nodes"):
        url = f"{node_url(topo, host)}/api/v1/cluster"
        try:
            _, data = request_json("GET", url, timeout=timeout, bearer=token)
        except HttpError as exc:
            problems.append(f"{host.name}: {exc}")
            continue
        if not isinstance(data, dict):
            problems.append(f"{host.name}: unexpected answer {str(data)[:80]!r}")
            continue
        if not data.get("errors"):
            return data
        first = first or data
    if first is not None:
        return first
    raise ApiError("no alert node answered: " + ("; ".join(problems) or "no alert node in "
                                                 f"{topo.source}"))


def nodes_part(topo: Topology, view: dict[str, Any] | None,
               error: str | None = None) -> dict[str, Any]:
    """The keys ``tenir status`` adds from a node's cluster view (or says it is unreachable):
    ``nodes`` (each alert node of the inventory, and any other member, with ``member``: whether
    it is a live member of the coordination service, null if unknown), ``watchdog_leader``,
    ``drained_sites``, ``campaigns`` (batches in flight per campaign, by node and by site) and
    ``cluster_view`` (which node answered, what it could not read)."""
    view = view or {}
    raw_members = view.get("members")
    members = ({str(m["name"]): str(m["site"]) for m in raw_members}
               if isinstance(raw_members, list) else None)
    nodes = [{"name": h.name, "site": h.site,
              "member": None if members is None else h.name in members}
             for h in topo.hosts_running("alert_nodes")]
    known = {n["name"] for n in nodes}
    nodes += [{"name": name, "site": site, "member": True}
              for name, site in sorted((members or {}).items()) if name not in known]
    site_of = {n["name"]: n["site"] for n in nodes}
    campaigns = []
    in_flight = view.get("in_flight")
    for cid, by_node in sorted((in_flight or {}).items(), key=lambda kv: int(kv[0])):
        by_site: dict[str, int] = {}
        for node, n in by_node.items():
            site = str(site_of.get(node) or "?")
            by_site[site] = by_site.get(site, 0) + int(n)
        campaigns.append({"id": int(cid), "in_flight": sum(int(n) for n in by_node.values()),
                          "by_node": dict(sorted(by_node.items())),
                          "by_site": dict(sorted(by_site.items()))})
    errors = list(view.get("errors") or [])
    if error is not None:
        errors.insert(0, error)
    return {
        "nodes": nodes,
        "watchdog_leader": view.get("watchdog_leader"),
        "drained_sites": view.get("drained_sites"),
        "campaigns": campaigns if in_flight is not None else None,
        "cluster_view": {"from": view.get("node"), "reachable": bool(view), "errors": errors},
    }


def fetch_drill_schedule(topo: Topology, token: str,
                         timeout: float = NODE_TIMEOUT_S) -> dict[str, Any]:
    """``GET /api/v1/drills/schedule`` of the first node that answers: each drill kind's
    interval, last run and whether it is overdue (``{"drills": null, "error": ...}`` if no node
    could say)."""
    problems = []
    for host in topo.hosts_running("alert_nodes"):
        try:
            _, data = request_json("GET", f"{node_url(topo, host)}/api/v1/drills/schedule",
                                   timeout=timeout, bearer=token)
        except HttpError as exc:
            problems.append(f"{host.name}: {exc}")
            if exc.status is not None:  # it answered: another node would say the same
                break
            continue
        if isinstance(data, dict) and isinstance(data.get("drills"), list):
            return {"drills": data["drills"], "error": None}
    return {"drills": None, "error": "; ".join(problems) or "no alert node"}


def gather_nodes(topo: Topology) -> dict[str, Any]:
    try:
        token = operator_token("auditor")
    except ApiError as exc:
        return {**nodes_part(topo, None, f"alert nodes not asked: {exc}"),
                "drills": {"drills": None, "error": str(exc)}}
    try:
        part = nodes_part(topo, fetch_cluster_view(topo, token))
    except ApiError as exc:
        return {**nodes_part(topo, None, f"alert nodes unreachable: {exc}"),
                "drills": {"drills": None, "error": str(exc)}}
    return {**part, "drills": fetch_drill_schedule(topo, token)}


def gather(topo: Topology, *, nodes: bool = True) -> dict[str, Any]:
    site_of = {h.name: h.site for h in topo.hosts.values()}
    health = probe_coordination(topo)
    view = patroni_view(topo)
    haproxy: list[dict[str, Any]] = []
    for host in topo.hosts_running("haproxy"):
        try:
            for s in haproxy_stats(topo, host).servers("postgres_primary"):
                haproxy.append({"site": host.site, "host": host.name, "server": s.server,
                                "state": s.status, "sessions": s.current_sessions})
        except HAProxyError as exc:
            haproxy.append({"site": host.site, "host": host.name, "server": None,
                            "state": "UNREACHABLE", "sessions": 0, "error": str(exc)})
    status = {
        "cluster": topo.name,
        "inventory": topo.source,
        "coordination": {
            "backend": topo.coordination,
            "members": [{"name": h.name, "site": site_of[h.name], "address": h.address,
                         "healthy": h.healthy, "leader": h.leader} for h in health],
            "quorum": has_quorum(health),
        },
        "postgres": {
            "reachable": view is not None,
            "primary": view.primary if view else None,
            "sync_standby": view.sync_standby if view else None,
            "lag_bytes": view.max_lag_bytes if view else None,
            "members": [{"name": m.name, "site": site_of.get(m.name), "role": m.role,
                         "state": m.state, "timeline": m.timeline, "lag_bytes": m.lag_bytes}
                        for m in (view.members if view else ())],
        },
        "haproxy": haproxy,
        **(gather_nodes(topo) if nodes else {}),
        "certificates": cert_status.gather(topo, cli_tls_context()),
    }
    status["problems"] = problems(status)
    return status
