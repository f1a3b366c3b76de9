"""The certificates the cluster's services present, read live by a TLS handshake with each (the
CLI's context: the cluster's CA and the operator's certificate), for ``tenir status``: when
each expires, and whether it is close to it. What a service presents is what counts (a renewed
file not yet loaded still shows its old certificate)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cluster.pki import RENEW_DAYS
from cluster.settings import int_setting, setting
from cluster.topology import Topology

# The pki play renews a certificate this many days before it expires (tenir_pki_renew_days):
# one closer than that was not renewed, or not reloaded.
TIMEOUT_S = 1.5


def endpoints(topo: Topology) -> list[tuple[str, str, str, int]]:
    """``(host, service, address, port)`` of every TLS listener the inventory gives."""
    out: list[tuple[str, str, str, int]] = []

    def add(group: str, service: str, role: str, port_var: str) -> None:
        for h in topo.hosts_running(group):
            out.append((h.name, service, str(h.address), int_setting(topo, h, role, port_var)))

    if topo.coordination == "zookeeper":
        add("zookeeper", "zookeeper", "zookeeper", "zookeeper_client_port")
    else:
        add("etcd", "etcd", "etcd", "etcd_client_port")
    add("postgres", "patroni", "patroni", "patroni_restapi_port")
    add("haproxy", "haproxy stats", "haproxy", "haproxy_stats_port")
    add("alert_nodes", "node api", "tenir_node", "tenir_node_port")
    if topo.vars.get("tenir_carriers_simulated"):
        add("carriers", "carriers", "carrier_sim", "carrier_sim_control_port")
    if topo.vars.get("tenir_evidence_origin"):
        for h in topo.hosts_running("evidence_witness"):
            out.append((h.name, "witness", str(h.address),
                        int(setting(topo, h, "tenir_witness", "tenir_witness_port"))))
    return out


def presented(address: str, port: int, context: ssl.SSLContext,
              now: dt.datetime) -> dict[str, Any]:
    """``{not_after, days_left}`` of the certificate the listener presents, or ``{error}``."""
    try:
        with socket.create_connection((address, port), timeout=TIMEOUT_S) as raw, \
                context.wrap_socket(raw, server_hostname=address) as tls:
            cert = tls.getpeercert()
    except (OSError, ssl.SSLError) as exc:
        return {"error": str(exc) or type(exc).__name__}
    end = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(str((cert or {})["notAfter"])),
                                    dt.UTC)
    return {"not_after": end.isoformat(), "days_left": int((end - now).total_seconds() // 86400)}


def gather(topo: Topology, context: ssl.SSLContext | None) -> list[dict[str, Any]]:
    """One entry per listener: host, service, address, port and what it presents."""
    now = dt.datetime.now(dt.UTC)
    found = endpoints(topo)
    if context is None:
        return [{"host": h, "service": s, "address": a, "port": p,
                 "error": "no CA known (TENIR_CA_FILE, TENIR_PKI_DIR or tenir_pki_dir)"}
                for h, s, a, p in found]
    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = list(pool.map(lambda e: presented(e[2], e[3], context, now), found))
    return [{"host": h, "service": s, "address": a, "port": p, **r}
            for (h, s, a, p), r in zip(found, seen, strict=True)]


def certificate_problems(certs: list[Mapping[str, Any]]) -> list[str]:
    """Certificates presented that expire within RENEW_DAYS (the play should have renewed
    them) or that could not be verified; a listener that does not answer at all is another
    section's problem."""
    out = []
    for c in certs:
        where = f"{c['service']} on {c['host']}"
        if "days_left" in c and c["days_left"] < RENEW_DAYS:
            out.append(f"certificate of {where} expires in {c['days_left']} days: run site.yml "
                       "(it renews it) and check the service reloaded it")
        elif "CERTIFICATE_VERIFY_FAILED" in str(c.get("error", "")):
            out.append(f"certificate of {where} is not signed by the cluster's CA: "
                       f"{c['error']}")
    return out


def certificate_lines(certs: list[Mapping[str, Any]]) -> list[str]:
    lines = ["certificates: what each service presents, verified by the cluster's CA"]
    for c in certs:
        what = (f"expires {str(c['not_after'])[:10]} ({c['days_left']} days)" if "days_left" in c
                else f"not read: {c['error']}")
        lines.append(f"  {c['service']} on {c['host']}: {what}")
    return lines
