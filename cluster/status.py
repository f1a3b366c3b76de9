"""``tenir status``: one view of the cluster, read from etcd, Patroni's REST API and HAProxy's
admin socket at the addresses the inventory gives. Works against any inventory."""

from __future__ import annotations

from typing import Any

from cluster.etcd_probe import has_quorum, probe_members
from cluster.lab.health import etcd_members, haproxy_admin, patroni_view
from cluster.settings import int_setting
from cluster.topology import Topology
from replication.haproxy import HAProxyError


def gather(topo: Topology) -> dict[str, Any]:
    port = int_setting(topo, None, "etcd", "etcd_client_port")
    site_of = {h.name: h.site for h in topo.hosts.values()}
    health = probe_members(etcd_members(topo), port)
    view = patroni_view(topo)
    haproxy: list[dict[str, Any]] = []
    for host in topo.hosts_running("haproxy"):
        try:
            for s in haproxy_admin(topo, host).servers("postgres_primary"):
                haproxy.append({"site": host.site, "host": host.name, "server": s.server,
                                "state": s.status, "sessions": s.current_sessions})
        except HAProxyError as exc:
            haproxy.append({"site": host.site, "host": host.name, "server": None,
                            "state": "UNREACHABLE", "sessions": 0, "error": str(exc)})
    return {
        "cluster": topo.name,
        "inventory": topo.source,
        "etcd": {
            "members": [{"name": h.name, "site": site_of[h.name], "address": h.address,
                         "healthy": h.healthy, "leader": h.leader} for h in health],
            "quorum": has_quorum(health),
        },
        "postgres": {
            "primary": view.primary if view else None,
            "sync_standby": view.sync_standby if view else None,
            "lag_bytes": view.max_lag_bytes if view else None,
            "members": [{"name": m.name, "site": site_of.get(m.name), "role": m.role,
                         "state": m.state, "timeline": m.timeline, "lag_bytes": m.lag_bytes}
                        for m in (view.members if view else ())],
        },
        "haproxy": haproxy,
    }


def render_table(status: dict[str, Any]) -> str:
    lines = [f"cluster {status['cluster']}  ({status['inventory']})", ""]
    etcd = status["etcd"]
    lines.append(f"etcd: quorum {'yes' if etcd['quorum'] else 'NO'}")
    for m in etcd["members"]:
        flags = ("healthy" if m["healthy"] else "DOWN") + ("  leader" if m["leader"] else "")
        lines.append(f"  {m['name']:<16} {m['site']:<10} {m['address']:<15} {flags}")
    pg = status["postgres"]
    lag = "unknown" if pg["lag_bytes"] is None else f"{pg['lag_bytes']} bytes"
    lines += ["", f"postgres: primary {pg['primary'] or 'NONE'}, synchronous standby "
              f"{pg['sync_standby'] or 'NONE'}, lag {lag}"]
    for m in pg["members"]:
        lines.append(f"  {m['name']:<16} {m['site'] or '?':<10} {m['role']:<13} {m['state']:<10}"
                     f" tl {m['timeline']}")
    lines += ["", "haproxy (postgres_primary):"]
    for h in status["haproxy"]:
        lines.append(f"  {h['site']:<10} {h['host']:<16} -> {h['server'] or '-':<16} {h['state']}")
    return "\n".join(lines)
