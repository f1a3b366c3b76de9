"""Health conditions of the cluster that ``lab up`` waits for (and the tests reuse)."""

from __future__ import annotations

import ssl

from cluster import etcd_probe, zookeeper_probe
from cluster.httpjson import HttpError, request_json
from cluster.member_probe import MemberHealth, has_quorum
from cluster.settings import coordination_port, int_setting, setting
from cluster.topology import Host, Topology
from cluster.wait import wait_for
from replication.haproxy import HAProxyError, HAProxyStats
from replication.patroni import PatroniClient, PatroniCluster


def coordination_members(topo: Topology) -> list[tuple[str, str]]:
    return [(h.name, str(h.address)) for h in topo.hosts_running(topo.coordination)]


def probe_coordination(topo: Topology) -> list[MemberHealth]:
    """Each member of the topology's coordination service (etcd or ZooKeeper), probed."""
    from cluster import tls

    probe = (zookeeper_probe.probe_members if topo.coordination == "zookeeper"
             else etcd_probe.probe_members)
    members = coordination_members(topo)
    try:  # etcd's JSON gateway wants the certificate without a common name
        context = (tls.client_context() if topo.coordination == "zookeeper"
                   else tls.gateway_client_context())
    except tls.TlsConfigError as exc:  # said member by member, never probed in clear
        return [MemberHealth(name, address, False, False, None, str(exc))
                for name, address in members]
    return probe(members, coordination_port(topo), tls=context)


def cli_tls_context() -> ssl.SSLContext | None:
    """The CLI's TLS context (the cluster's CA, the operator's certificate), or None when no
    CA is known (then the probes say what failed, member by member)."""
    from cluster import tls

    try:
        return tls.client_context()
    except tls.TlsConfigError:
        return None


def wait_coordination(topo: Topology, timeout: float, *, all_members: bool = True) -> None:
    def probe() -> tuple[bool, None, str]:
        health = probe_coordination(topo)
        ok = all(h.healthy for h in health) if all_members else has_quorum(health)
        return ok, None, ", ".join(f"{h.name}={'ok' if h.healthy else h.error}" for h in health)

    wait_for(f"{topo.coordination} members healthy", probe, timeout)


def patroni_client(topo: Topology, host: Host,
                   auth: tuple[str, str] | None = None) -> PatroniClient:
    return PatroniClient(str(host.address), int_setting(topo, host, "patroni",
                                                        "patroni_restapi_port"), auth)


def patroni_view(topo: Topology) -> PatroniCluster | None:
    """The cluster as seen by the first Patroni that answers, or None."""
    for host in topo.hosts_running("postgres"):
        try:
            return patroni_client(topo, host).cluster()
        except Exception:  # noqa: S112 - try the next member
            continue
    return None


def wait_primary(topo: Topology, host: Host, timeout: float) -> None:
    client = patroni_client(topo, host)
    wait_for(f"{host.name} to be the PostgreSQL primary",
             lambda: (client.is_primary(), None, "not primary yet"), timeout)


def wait_replication(topo: Topology, timeout: float) -> PatroniCluster:
    def probe() -> tuple[bool, PatroniCluster | None, str]:
        view = patroni_view(topo)
        if view is None:
            return False, None, "no Patroni answers"
        desc = ", ".join(f"{m.name}:{m.role}/{m.state}" for m in view.members)
        return view.primary is not None and view.sync_standby is not None, view, desc

    result = wait_for("a primary and a streaming synchronous standby", probe, timeout)
    assert result is not None
    return result


def haproxy_stats(topo: Topology, host: Host) -> HAProxyStats:
    """This HAProxy's read-only statistics page (HTTPS, ``stats auth``)."""
    port = int_setting(topo, host, "haproxy", "haproxy_stats_port")
    uri = str(setting(topo, host, "haproxy", "haproxy_stats_uri"))
    user = str(setting(topo, host, "haproxy", "haproxy_stats_user"))
    return HAProxyStats(f"https://{host.address}:{port}{uri}", (user, haproxy_stats_password()))


def haproxy_stats_password() -> str:
    """``$TENIR_HAPROXY_STATS_PASSWORD``, else the lab's secret; a clear error if neither
    (HAProxy's statistics page asks for it)."""
    from cluster.credentials import secret

    password = secret("TENIR_HAPROXY_STATS_PASSWORD", "haproxy_stats")
    if not password:
        raise HAProxyError("no password for HAProxy's statistics page: set "
                           "TENIR_HAPROXY_STATS_PASSWORD (the lab's secret exists once it is up)")
    return password


def haproxy_routes(topo: Topology, host: Host) -> list[str]:
    """Names of the PostgreSQL servers this HAProxy currently routes to (status UP)."""
    return [s.server for s in haproxy_stats(topo, host).servers("postgres_primary") if s.up]


def wait_haproxy_routes_to(topo: Topology, primary: str, timeout: float,
                           hosts: list[Host] | None = None) -> None:
    targets = hosts if hosts is not None else topo.hosts_running("haproxy")

    def probe() -> tuple[bool, None, str]:
        seen = {h.name: haproxy_routes(topo, h) for h in targets}
        return all(v == [primary] for v in seen.values()), None, str(seen)

    wait_for(f"every HAProxy to route only to {primary}", probe, timeout)


def _http_ok(url: str) -> bool:
    return _probe(url)[0]


def _probe(url: str) -> tuple[bool, object]:
    """(answered 200, the JSON body or None)."""
    try:
        status, body = request_json("GET", url, timeout=1.0, accept_status=(200, 503))
    except HttpError:
        return False, None
    return status == 200, body


def node_state(topo: Topology, host: Host) -> str:
    """``dispatching``, ``ready`` (serving, not sending: membership in doubt or cut from the
    store), or ``unready`` (no answer, or the store unreachable)."""
    ok, body = _probe(f"{node_url(topo, host)}/readyz")
    if not ok:
        return "unready"
    return "dispatching" if isinstance(body, dict) and body.get("dispatching") else "ready"


def node_url(topo: Topology, host: Host) -> str:
    return f"https://{host.address}:{int_setting(topo, host, 'tenir_node', 'tenir_node_port')}"


def carriers_control_url(topo: Topology, host: Host) -> str:
    port = int_setting(topo, host, "carrier_sim", "carrier_sim_control_port")
    return f"https://{host.address}:{port}"


def wait_nodes(topo: Topology, timeout: float) -> None:
    """Until every alert node is ready and dispatching: a node back from a fault (frozen,
    cut, its site powered off) answers as soon as it reaches the store, and sends again only
    once its membership is confirmed. A campaign launched before would run without it."""
    hosts = topo.hosts_running("alert_nodes")

    def probe() -> tuple[bool, None, str]:
        state = {h.name: node_state(topo, h) for h in hosts}
        return all(s == "dispatching" for s in state.values()), None, str(state)

    wait_for("every alert node ready and dispatching", probe, timeout)


def wait_carriers(topo: Topology, timeout: float) -> None:
    hosts = topo.hosts_running("carriers")

    def probe() -> tuple[bool, None, str]:
        ready = {h.name: _http_ok(f"{carriers_control_url(topo, h)}/healthz") for h in hosts}
        return all(ready.values()), None, str(ready)

    wait_for("every carrier simulator up", probe, timeout)
