"""What runs on each lab host: the command line and the configuration of etcd, Patroni and HAProxy,
rendered from the Ansible roles' templates with values derived from the topology."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.lab.layout import Layout, patroni_bin
from cluster.lab.netns import namespace_name
from cluster.render import render
from cluster.settings import int_setting, setting
from cluster.topology import Host, Topology

# Start order; lab down stops in the reverse order.
SERVICE_ORDER = ("etcd", "patroni", "haproxy")
SERVICE_OF_GROUP = {"etcd": "etcd", "postgres": "patroni", "haproxy": "haproxy"}


@dataclass(frozen=True)
class ServiceSpec:
    host: Host
    service: str
    argv: list[str]
    config: Path
    config_text: str
    config_owner: str | None = None
    config_mode: int = 0o644
    validate: list[str] | None = None

    @property
    def config_sha(self) -> str:
        return hashlib.sha256(self.config_text.encode()).hexdigest()[:16]


def _in_namespace(host: Host, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace_name(host.name), *argv]


def _inventory_values(topo: Topology, host: Host, role: str) -> dict[str, Any]:
    """The role's variables set in the inventory (global, then host), as Ansible would apply."""
    prefix = f"{role}_"
    merged = {**topo.vars, **host.vars}
    return {k: v for k, v in merged.items() if k.startswith(prefix)}


def etcd_spec(topo: Topology, host: Host, layout: Layout) -> ServiceSpec:
    members = [{"name": h.name, "address": str(h.address)} for h in topo.hosts_running("etcd")]
    text = render("etcd", "etcd.conf.yml.j2", {
        **_inventory_values(topo, host, "etcd"),
        "etcd_name": host.name,
        "etcd_listen_address": str(host.address),
        "etcd_initial_cluster": members,
        "etcd_initial_cluster_token": f"{topo.name}-etcd",
        "etcd_data_dir": str(layout.etcd_data(host.name)),
    })
    config = layout.config(host.name, "etcd.conf.yml")
    return ServiceSpec(host, "etcd", _in_namespace(host, ["etcd", "--config-file", str(config)]),
                       config, text)


def patroni_spec(topo: Topology, host: Host, layout: Layout,
                 secrets: dict[str, str]) -> ServiceSpec:
    etcd_port = int_setting(topo, None, "etcd", "etcd_client_port")
    network = topo.lab_network or setting(topo, host, "patroni", "patroni_allowed_network")
    text = render("patroni", "patroni.yml.j2", {
        **_inventory_values(topo, host, "patroni"),
        "patroni_scope": topo.name,
        "patroni_name": host.name,
        "patroni_address": str(host.address),
        "patroni_etcd_hosts": [f"{h.address}:{etcd_port}" for h in topo.hosts_running("etcd")],
        "patroni_ttl": topo.timings.ttl,
        "patroni_loop_wait": topo.timings.loop_wait,
        "patroni_retry_timeout": topo.timings.retry_timeout,
        "patroni_allowed_network": str(network),
        "patroni_data_dir": str(layout.pg_data(host.name)),
        "patroni_socket_dir": str(layout.pg_run(host.name)),
        "patroni_pgpass": str(layout.pg_run(host.name) / "pgpass"),
        "patroni_restapi_password": secrets["restapi"],
        "patroni_superuser_password": secrets["superuser"],
        "patroni_replication_password": secrets["replication"],
        "patroni_rewind_password": secrets["rewind"],
    })
    config = layout.config(host.name, "patroni.yml")
    argv = _in_namespace(host, [
        "setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
        str(patroni_bin()), str(config),
    ])
    return ServiceSpec(host, "patroni", argv, config, text, config_owner="postgres",
                       config_mode=0o600)


def haproxy_spec(topo: Topology, host: Host, layout: Layout) -> ServiceSpec:
    backends = [{"name": h.name, "address": str(h.address)} for h in topo.hosts_running("postgres")]
    config = layout.config(host.name, "haproxy.cfg")
    text = render("haproxy", "haproxy.cfg.j2", {
        **_inventory_values(topo, host, "haproxy"),
        # HAProxy must reach the ports the patroni role actually configured.
        "haproxy_pg_port": int_setting(topo, host, "patroni", "patroni_pg_port"),
        "haproxy_patroni_port": int_setting(topo, host, "patroni", "patroni_restapi_port"),
        "haproxy_bind_address": str(host.address),
        "haproxy_admin_address": str(host.address),
        "haproxy_admin_socket": str(layout.config(host.name, "haproxy.sock")),
        "haproxy_backends": backends,
    })
    return ServiceSpec(host, "haproxy", _in_namespace(host, ["haproxy", "-db", "-f", str(config)]),
                       config, text, validate=["haproxy", "-c", "-q", "-f"])


def specs_for(topo: Topology, layout: Layout, secrets: dict[str, str]) -> list[ServiceSpec]:
    out: list[ServiceSpec] = []
    for service in SERVICE_ORDER:
        for host in topo.hosts.values():
            if service == "etcd" and host.runs("etcd"):
                out.append(etcd_spec(topo, host, layout))
            elif service == "patroni" and host.runs("postgres"):
                out.append(patroni_spec(topo, host, layout, secrets))
            elif service == "haproxy" and host.runs("haproxy"):
                out.append(haproxy_spec(topo, host, layout))
    return out


def write_config(spec: ServiceSpec, layout: Layout) -> None:
    layout.write_file(spec.config, spec.config_text, owner=spec.config_owner,
                      mode=spec.config_mode)
    if spec.validate is not None:
        proc = subprocess.run([*spec.validate, str(spec.config)], capture_output=True, text=True,
                              timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"{spec.config} is invalid: {proc.stdout}{proc.stderr}")
