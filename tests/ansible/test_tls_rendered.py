"""TLS everywhere, as the roles render it for the lab (etcd and ZooKeeper) and the production
example: every listener between hosts speaks TLS, every client verifies by the cluster's CA,
and no plain listener is left (no http:// URL, no plain ZooKeeper client port, no TCP admin
socket, no pg_hba line that lets a host in without TLS)."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.ansible.render import render_inventory
from tests.ansible.test_rendered_configs import LAB, LAB_EXTRA, PRODUCTION, VAULT_PASSWORD

Rendered = dict[str, dict[str, str]]


@pytest.fixture(scope="module", params=["lab-etcd", "lab-zookeeper", "production-etcd"])
def rendered(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Rendered]:
    name = str(request.param)
    out = tmp_path_factory.mktemp(name)
    backend = name.split("-")[1]
    if name.startswith("lab"):
        return name, render_inventory(LAB, out, {**LAB_EXTRA, "tenir_coordination": backend})
    return name, render_inventory(PRODUCTION, out, {"tenir_coordination": backend},
                                  vault_password_file=VAULT_PASSWORD)


def files(rendered: Rendered, name: str) -> dict[str, str]:
    return {host: f[name] for host, f in rendered.items() if name in f}


def test_no_config_names_a_plain_http_url(rendered: tuple[str, Rendered]) -> None:
    _, hosts = rendered
    for host, fs in hosts.items():
        for name, text in fs.items():
            assert "http://" not in text, f"{host}/{name}"


def test_etcd_serves_clients_and_peers_over_tls_with_client_certificates(
        rendered: tuple[str, Rendered]) -> None:
    _, hosts = rendered
    for host, text in files(hosts, "etcd.conf.yml").items():
        conf = yaml.safe_load(text)
        for key in ("listen-peer-urls", "listen-client-urls", "advertise-client-urls",
                    "initial-advertise-peer-urls", "initial-cluster"):
            urls = re.findall(r"\w+://", conf[key])
            assert urls and set(urls) == {"https://"}, (host, key)
        for side in ("client-transport-security", "peer-transport-security"):
            assert conf[side]["client-cert-auth"] is True, (host, side)
            assert conf[side]["trusted-ca-file"].endswith("/ca.crt")


def test_zookeeper_has_no_plain_client_port_and_its_quorum_is_tls(
        rendered: tuple[str, Rendered]) -> None:
    _, hosts = rendered
    for host, text in files(hosts, "zoo.cfg").items():
        keys = dict(line.split("=", 1) for line in text.splitlines()
                    if line.strip() and not line.startswith("#"))
        assert "clientPort" not in keys, host
        assert keys["secureClientPort"] == "2181"
        assert keys["ssl.clientAuth"] == "need" and keys["sslQuorum"] == "true"
        assert keys["authProvider.x509"].endswith("X509AuthenticationProvider")


def test_patroni_rest_postgres_and_dcs_over_tls(rendered: tuple[str, Rendered]) -> None:
    name, hosts = rendered
    for host, text in files(hosts, "patroni.yml").items():
        conf = yaml.safe_load(text)
        assert conf["restapi"]["certfile"].endswith("/host.crt"), host
        assert conf["ctl"]["insecure"] is False
        pg = conf["postgresql"]
        assert pg["parameters"]["ssl"] == "on"
        for line in pg["pg_hba"]:
            kind = line.split()[0]
            assert kind == "local" or kind == "hostssl" or line.endswith(" reject"), line
        assert "127.0.0.1" not in pg["listen"]
        for user in ("superuser", "replication", "rewind"):
            assert pg["authentication"][user]["sslmode"] == "verify-full"
        if "zookeeper" in name:
            assert conf["zookeeper"]["use_ssl"] is True
            assert set(conf["zookeeper"]["set_acls"]) == {"CN=paris-db", "CN=marseille-db"}
        else:
            assert conf["etcd3"]["protocol"] == "https" and conf["etcd3"]["username"]
            # etcd's JSON gateway answers HTTP 400 to a client certificate carrying a common
            # name once RBAC is on: Patroni presents the one made without
            assert conf["etcd3"]["cert"].endswith("/gateway.crt"), host


def test_haproxy_binds_statistics_over_tls_and_checks_patroni_over_tls(
        rendered: tuple[str, Rendered]) -> None:
    _, hosts = rendered
    for host, text in files(hosts, "haproxy.cfg").items():
        binds = re.findall(r"^\s*bind (\S+)(.*)$", text, re.M)
        # PostgreSQL's port passes the client's own TLS session through (TCP mode); every
        # other bind is TLS
        assert [b for b in binds if "ssl crt" not in b[1]] == [(binds[1][0], "")]
        assert binds[1][0].endswith(":5000"), host
        assert re.findall(r"^\s*stats socket (\S+)", text, re.M) == ["/run/haproxy/admin.sock"]
        servers = re.findall(r"^\s*server .*$", text, re.M)
        assert servers and all("check-ssl verify required ca-file" in s for s in servers)


def test_nodes_carriers_and_witness_speak_tls(rendered: tuple[str, Rendered]) -> None:
    name, hosts = rendered
    for host, text in files(hosts, "node.yml").items():
        conf = yaml.safe_load(text)
        assert conf["public_url"].startswith("https://"), host
        assert set(conf["tls"]) == {"ca", "cert", "key"}
        assert "sslmode=verify-full" in conf["dsn"]
        assert conf["carriers"]["tls"] is True
        assert all(u.startswith("https://") for u in conf["patroni_urls"])
        assert conf["evidence"]["witness_url"].startswith("https://")
        digest = conf["coordination"].get("zk_digest")
        assert (digest is not None) == ("zookeeper" in name)
    for host, text in files(hosts, "tenir-carriers.service").items():
        assert "--tls-cert /etc/tenir-carriers/tls/host.crt" in text, host
    for host, text in files(hosts, "witness.yml").items():
        assert yaml.safe_load(text)["tls"]["cert"] == "/etc/tenir-witness/tls/host.crt", host
