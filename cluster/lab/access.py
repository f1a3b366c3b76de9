"""How a client reaches the lab's PostgreSQL: through a site's HAProxy, with the lab's secrets."""

from __future__ import annotations

from cluster.lab.layout import Layout, lab_dir
from cluster.settings import int_setting
from cluster.topology import Host, Topology
from replication.appdb import APP_DB, APP_USER, dsn


def site_haproxy(topo: Topology, site: str) -> Host:
    return next(h for h in topo.hosts_running("haproxy") if h.site == site)


def app_dsn(topo: Topology, site: str, layout: Layout | None = None) -> str:
    """DSN of the application database through ``site``'s HAProxy."""
    secrets = (layout or Layout(lab_dir())).load_secrets()
    if secrets is None:
        raise RuntimeError("the lab has no secrets: is it up?")
    host = site_haproxy(topo, site)
    port = int_setting(topo, host, "haproxy", "haproxy_primary_port")
    return dsn(str(host.address), port, APP_USER, secrets["app"], APP_DB)
