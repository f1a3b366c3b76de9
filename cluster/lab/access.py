"""How a client reaches the lab's PostgreSQL: through a site's HAProxy, with the lab's secrets."""

from __future__ import annotations

from cluster.lab.layout import Layout, lab_dir
from cluster.settings import int_setting
from cluster.topology import Host, Topology
from replication.appdb import APP_DB, APP_USER, OWNER_USER, dsn


def site_haproxy(topo: Topology, site: str) -> Host:
    return next(h for h in topo.hosts_running("haproxy") if h.site == site)


def _dsn(topo: Topology, site: str, user: str, secret: str, layout: Layout | None) -> str:
    secrets = (layout or Layout(lab_dir())).load_secrets()
    if secrets is None:
        raise RuntimeError("the lab has no secrets: is it up?")
    host = site_haproxy(topo, site)
    port = int_setting(topo, host, "haproxy", "haproxy_primary_port")
    return dsn(str(host.address), port, user, secrets[secret], APP_DB)


def app_dsn(topo: Topology, site: str, layout: Layout | None = None) -> str:
    """DSN of the application database through ``site``'s HAProxy, as the nodes' role (DML on
    the application's tables only)."""
    return _dsn(topo, site, APP_USER, "app", layout)


def owner_dsn(topo: Topology, site: str, layout: Layout | None = None) -> str:
    """The same as the schema owner: for measurements that create their own probe tables
    (the application role cannot create anything)."""
    return _dsn(topo, site, OWNER_USER, "owner", layout)
