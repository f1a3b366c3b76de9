"""What runs on each lab host: the command line and the configuration of etcd or ZooKeeper,
Patroni, HAProxy, the carrier simulators and the alert nodes, rendered from the Ansible roles'
templates with values derived from the topology. Only the coordination service the topology
chooses (``tenir_coordination``) runs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.lab.layout import Layout, patroni_bin
from cluster.lab.netns import namespace_name
from cluster.render import render
from cluster.settings import coordination_endpoints, int_setting, setting
from cluster.topology import COORDINATION_BACKENDS, Host, Topology
from nodes.users import ROLES, token_digest
from replication.appdb import APP_DB, APP_USER, dsn

# Start order; lab down stops in the reverse order.
SERVICE_ORDER = ("etcd", "zookeeper", "patroni", "haproxy", "carriers", "node")
# Inventory group -> the lab service that implements it.
SERVICE_OF_GROUP = {"etcd": "etcd", "zookeeper": "zookeeper", "postgres": "patroni",
                    "haproxy": "haproxy", "carriers": "carriers", "alert_nodes": "node"}
GROUP_OF_SERVICE = {service: group for group, service in SERVICE_OF_GROUP.items()}
ZK_JARS = (Path("/usr/share/java/zookeeper.jar"),  # its manifest's Class-Path names the deps
           Path("/usr/share/java/slf4j-simple.jar"))  # the server's log, to stderr
JAVA = Path("/usr/bin/java")
PATRONI_DCS = {"etcd": "etcd3", "zookeeper": "zookeeper"}


def runs_here(topo: Topology, host: Host, service: str) -> bool:
    """Whether the lab runs ``service`` on ``host``: its group holds the host, and a
    coordination service runs only if it is the one the topology uses."""
    if service in COORDINATION_BACKENDS and service != topo.coordination:
        return False
    return host.runs(GROUP_OF_SERVICE[service])


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
    env_file: bool = False  # the config is KEY=VALUE lines handed to the process's environment
    extra_files: tuple[tuple[Path, str], ...] = ()  # other files the service reads (path, text)

    def environment(self) -> dict[str, str] | None:
        if not self.env_file:
            return None
        env = dict(os.environ)
        for line in self.config_text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                env[key.strip()] = value
        return env

    @property
    def config_sha(self) -> str:
        """Of everything that, changed, needs a restart: the command line and the files."""
        digest = hashlib.sha256("\0".join(self.argv).encode())
        digest.update(b"\0" + self.config_text.encode())
        for path, text in self.extra_files:
            digest.update(f"\0{path}\0{text}".encode())
        return digest.hexdigest()[:16]


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


def zookeeper_spec(topo: Topology, host: Host, layout: Layout) -> ServiceSpec:
    members = [{"id": i, "name": h.name, "address": str(h.address)}
               for i, h in enumerate(topo.group_members("zookeeper"), start=1)]
    myid = next(m["id"] for m in members if m["name"] == host.name)
    data = layout.zookeeper_data(host.name)
    values = {
        **_inventory_values(topo, host, "zookeeper"),
        "zookeeper_myid": myid,
        "zookeeper_members": members,
        "zookeeper_data_dir": str(data),
    }
    text = render("zookeeper", "zoo.cfg.j2", values)
    config = layout.config(host.name, "zoo.cfg")
    heap = int_setting(topo, host, "zookeeper", "zookeeper_heap_mb")
    user = str(setting(topo, host, "zookeeper", "zookeeper_user"))
    argv = _in_namespace(host, [
        "setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
        str(JAVA), f"-Xmx{heap}m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "-Dzookeeper.jmx.log4j.disable=true",
        # slf4j-simple's log lines carry no time unless asked: a failover is read by its times.
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
        "-cp", ":".join(str(j) for j in ZK_JARS),
        "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(config),
    ])
    return ServiceSpec(host, "zookeeper", argv, config, text,
                       extra_files=((data / "myid", render("zookeeper", "myid.j2", values)),))


def patroni_spec(topo: Topology, host: Host, layout: Layout,
                 secrets: dict[str, str]) -> ServiceSpec:
    network = topo.lab_network or setting(topo, host, "patroni", "patroni_allowed_network")
    text = render("patroni", "patroni.yml.j2", {
        **_inventory_values(topo, host, "patroni"),
        "patroni_scope": topo.name,
        "patroni_name": host.name,
        "patroni_address": str(host.address),
        "patroni_site": host.site,
        "patroni_dcs": PATRONI_DCS[topo.coordination],
        "patroni_dcs_hosts": coordination_endpoints(topo),
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


def site_carriers(topo: Topology, site: str) -> Host:
    return next(h for h in topo.hosts_running("carriers") if h.site == site)


def carriers_spec(topo: Topology, host: Host, layout: Layout,
                  secrets: dict[str, str]) -> ServiceSpec:
    def port(name: str) -> str:
        return str(int_setting(topo, host, "carrier_sim", f"carrier_sim_{name}"))

    argv = [sys.executable, "-m", "nodes.carriers.sim", "--site", host.site,
            "--host", str(host.address), "--smpp-port", port("smpp_port"),
            "--smtp-port", port("smtp_port"), "--voice-port", port("voice_port"),
            "--control-port", port("control_port"),
            "--receipt-delay-ms", port("receipt_delay_ms")]
    if setting(topo, host, "carrier_sim", "carrier_sim_dedup"):
        argv.append("--dedup")
    # The simulator takes its settings on the command line; the SMPP password comes from the
    # environment so that it never shows in a process listing.
    config = layout.config(host.name, "carriers.env")
    argv += ["--system-id", str(setting(topo, host, "carrier_sim", "carrier_sim_smpp_system_id"))]
    text = (f"TENIR_SIM_SMPP_PASSWORD={secrets['smpp']}\n"
            f"TENIR_SIM_VOICE_CALLBACK_SECRET={secrets['voice_callback']}\n")
    return ServiceSpec(host, "carriers", _in_namespace(host, argv), config, text,
                       config_mode=0o600, env_file=True)


def node_spec(topo: Topology, host: Host, layout: Layout, secrets: dict[str, str]) -> ServiceSpec:
    haproxy = next(h for h in topo.hosts_running("haproxy") if h.site == host.site)
    carriers = site_carriers(topo, host.site)
    pg_port = int_setting(topo, haproxy, "haproxy", "haproxy_primary_port")
    t = topo.node_timings
    # The member of the node's own site first: the node's session lives there, so losing the
    # other datacenter does not move it (the clients try the endpoints in this order).
    members = topo.hosts_running(topo.coordination)
    endpoints = coordination_endpoints(topo)
    local_first = sorted(zip(members, endpoints, strict=True),
                         key=lambda pair: pair[0].site != host.site)
    text = render("tenir_node", "node.yml.j2", {
        "tenir_node_coordination_backend": topo.coordination,
        "tenir_node_coordination_endpoints": [e for _, e in local_first],
        "tenir_node_coordination_namespace": f"/tenir/{topo.name}/",
        "tenir_node_membership_ttl": t.membership_ttl,
        "tenir_node_coordination_retry_timeout": t.retry_timeout,
        "tenir_node_fencing_safety": t.fencing_safety,
        "tenir_node_watchdog_cycle_s": t.watchdog_cycle,
        **_inventory_values(topo, host, "tenir_node"),
        "tenir_node_name": host.name,
        "tenir_node_site": host.site,
        "tenir_node_address": str(host.address),
        "tenir_node_dsn": dsn(str(haproxy.address), pg_port, APP_USER, secrets["app"], APP_DB),
        # One lab user per role; the CLI holds the tokens, the nodes only their digests.
        "tenir_node_users": [{"name": f"lab-{role}", "role": role,
                              "token_sha256": token_digest(secrets[f"token_{role}"])}
                             for role in ROLES],
        "tenir_node_ack_keys": [{"id": "lab", "secret": secrets["ack_key"]}],
        "tenir_node_voice_callback_secrets": [secrets["voice_callback"]],
        "tenir_node_carriers_host": str(carriers.address),
        "tenir_node_smpp_port": int_setting(topo, carriers, "carrier_sim", "carrier_sim_smpp_port"),
        "tenir_node_smpp_system_id": setting(topo, carriers, "carrier_sim",
                                             "carrier_sim_smpp_system_id"),
        "tenir_node_smpp_password": secrets["smpp"],
        "tenir_node_smtp_port": int_setting(topo, carriers, "carrier_sim", "carrier_sim_smtp_port"),
        "tenir_node_voice_port": int_setting(topo, carriers, "carrier_sim",
                                             "carrier_sim_voice_port"),
        "tenir_node_lease_s": topo.node_timings.batch_lease,
        # The watchdog reads PostgreSQL's state from Patroni's REST API (GET /cluster).
        "tenir_node_patroni_urls": [
            f"http://{h.address}:{int_setting(topo, h, 'patroni', 'patroni_restapi_port')}"
            for h in topo.hosts_running("postgres")],
    })
    config = layout.config(host.name, "node.yml")
    argv = _in_namespace(host, [sys.executable, "-m", "nodes.main", "--config", str(config)])
    return ServiceSpec(host, "node", argv, config, text, config_mode=0o600)


def specs_for(topo: Topology, layout: Layout, secrets: dict[str, str]) -> list[ServiceSpec]:
    out: list[ServiceSpec] = []
    for service in SERVICE_ORDER:
        for host in topo.hosts.values():
            if not runs_here(topo, host, service):
                continue
            if service == "etcd":
                out.append(etcd_spec(topo, host, layout))
            elif service == "zookeeper":
                out.append(zookeeper_spec(topo, host, layout))
            elif service == "patroni":
                out.append(patroni_spec(topo, host, layout, secrets))
            elif service == "haproxy":
                out.append(haproxy_spec(topo, host, layout))
            elif service == "carriers":
                out.append(carriers_spec(topo, host, layout, secrets))
            elif service == "node":
                out.append(node_spec(topo, host, layout, secrets))
    return out


def write_config(spec: ServiceSpec, layout: Layout) -> None:
    layout.write_file(spec.config, spec.config_text, owner=spec.config_owner,
                      mode=spec.config_mode)
    for path, text in spec.extra_files:
        layout.write_file(path, text, owner=spec.config_owner, mode=spec.config_mode)
    if spec.validate is not None:
        proc = subprocess.run([*spec.validate, str(spec.config)], capture_output=True, text=True,
                              timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"{spec.config} is invalid: {proc.stdout}{proc.stderr}")
