"""The Ansible roles' templates, rendered by tenir: role defaults plus given values make valid
configuration, an undefined variable is an error, and the lab's real configs keep secrets out of
command lines and pass HAProxy's own check."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from cluster.render import ROLES_DIR, render, role_defaults

pytestmark = pytest.mark.unit

HAPROXY = Path("/usr/sbin/haproxy")

MEMBERS = [
    {"name": "paris-db", "address": "10.213.0.11"},
    {"name": "marseille-db", "address": "10.213.0.21"},
    {"name": "witness-quorum", "address": "10.213.0.31"},
]


def etcd_values() -> dict[str, Any]:
    return {
        "etcd_name": "paris-db",
        "etcd_listen_address": "10.213.0.11",
        "etcd_initial_cluster": [dict(m) for m in MEMBERS],
    }


def patroni_values() -> dict[str, Any]:
    return {
        "patroni_scope": "tenir-test",
        "patroni_name": "paris-db",
        "patroni_address": "10.213.0.11",
        "patroni_site": "paris",
        "patroni_dcs_hosts": [f"{m['address']}:2379" for m in MEMBERS],
        "patroni_ttl": 20,
        "patroni_loop_wait": 2,
        "patroni_retry_timeout": 4,
        "patroni_allowed_network": "10.213.0.0/24",
        "patroni_pgpass": "/tmp/tenir-test/pgpass",
        "patroni_restapi_password": "pw-restapi",
        "patroni_superuser_password": "pw-superuser",
        "patroni_replication_password": "pw-replication",
        "patroni_rewind_password": "pw-rewind",
        "patroni_etcd_password": "pw-etcd",
    }


def zookeeper_values() -> dict[str, Any]:
    return {"zookeeper_members": [{"id": i, **m} for i, m in enumerate(MEMBERS, start=1)],
            "zookeeper_myid": 1, "zookeeper_client_address": "10.213.0.11"}


def haproxy_values() -> dict[str, Any]:
    return {
        "haproxy_bind_address": "10.213.0.11",
        "haproxy_stats_password": "pw-stats",
        "haproxy_backends": [dict(m) for m in MEMBERS[:2]],
    }


TEMPLATES = {
    "etcd": ("etcd.conf.yml.j2", etcd_values),
    "patroni": ("patroni.yml.j2", patroni_values),
    "haproxy": ("haproxy.cfg.j2", haproxy_values),
    "zookeeper": ("zoo.cfg.j2", zookeeper_values),
}


def _render(role: str, **overrides: Any) -> str:
    template, values = TEMPLATES[role]
    return render(role, template, {**values(), **overrides})


# --- role defaults --------------------------------------------------------------------------------
@pytest.mark.parametrize("role", sorted(TEMPLATES))
def test_role_defaults_are_a_mapping(role: str) -> None:
    defaults = role_defaults(role)
    assert defaults
    assert all(name.startswith(f"{role}_") for name in defaults)


@pytest.mark.parametrize("role", sorted(TEMPLATES))
def test_argument_specs_agree_with_defaults(role: str) -> None:
    """meta/argument_specs.yml documents the same defaults as defaults/main.yml."""
    specs = yaml.safe_load((ROLES_DIR / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    defaults = role_defaults(role)
    documented = {name: o["default"] for name, o in options.items() if "default" in o}
    assert documented == defaults
    for name, option in options.items():
        assert option.get("required", False) != ("default" in option), name


def test_role_defaults_must_be_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "bogus" / "defaults").mkdir(parents=True)
    (tmp_path / "bogus" / "defaults" / "main.yml").write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="defaults must be a mapping"):
        role_defaults("bogus", tmp_path)


def test_given_values_override_role_defaults(tmp_path: Path) -> None:
    role = tmp_path / "demo"
    (role / "defaults").mkdir(parents=True)
    (role / "templates").mkdir()
    (role / "defaults" / "main.yml").write_text("demo_port: 1\ndemo_name: default\n")
    (role / "templates" / "t.j2").write_text("{{ demo_name }}:{{ demo_port }}\n")
    assert render("demo", "t.j2", {}, tmp_path) == "default:1\n"
    assert render("demo", "t.j2", {"demo_port": 2}, tmp_path) == "default:2\n"


# --- etcd -----------------------------------------------------------------------------------------
def test_etcd_config() -> None:
    conf = yaml.safe_load(_render("etcd"))
    assert conf["name"] == "paris-db"
    assert conf["initial-cluster"] == (
        "paris-db=https://10.213.0.11:2380,"
        "marseille-db=https://10.213.0.21:2380,"
        "witness-quorum=https://10.213.0.31:2380"
    )
    assert conf["initial-cluster-state"] == "new"
    assert conf["initial-cluster-token"] == "tenir-etcd"
    assert conf["listen-peer-urls"] == "https://10.213.0.11:2380"
    assert conf["initial-advertise-peer-urls"] == "https://10.213.0.11:2380"
    assert conf["listen-client-urls"] == "https://10.213.0.11:2379"
    assert conf["advertise-client-urls"] == "https://10.213.0.11:2379"
    for side in ("client-transport-security", "peer-transport-security"):
        assert conf[side] == {"cert-file": "/etc/etcd/tls/host.crt",
                              "key-file": "/etc/etcd/tls/host.key",
                              "trusted-ca-file": "/etc/etcd/tls/ca.crt",
                              "client-cert-auth": True}
    assert conf["data-dir"] == "/var/lib/etcd/tenir"
    assert conf["heartbeat-interval"] == 100
    assert conf["election-timeout"] == 1000
    assert conf["pre-vote"] is True
    assert conf["enable-grpc-gateway"] is True
    assert conf["enable-v2"] is False


def test_etcd_config_honours_overrides() -> None:
    conf = yaml.safe_load(_render("etcd", etcd_pre_vote=False, etcd_peer_port=12380))
    assert conf["pre-vote"] is False
    assert conf["listen-peer-urls"] == "https://10.213.0.11:12380"
    assert conf["initial-cluster"].count(":12380") == 3


# --- patroni --------------------------------------------------------------------------------------
def test_patroni_config() -> None:
    conf = yaml.safe_load(_render("patroni"))
    assert conf["scope"] == "tenir-test"
    assert conf["name"] == "paris-db"
    assert conf["namespace"] == "/service/"
    assert conf["restapi"]["listen"] == "10.213.0.11:8008"
    assert conf["restapi"]["authentication"] == {"username": "patroni", "password": "pw-restapi"}
    tls = "/etc/patroni/tls"
    assert (conf["restapi"]["certfile"], conf["restapi"]["keyfile"], conf["restapi"]["cafile"]) == (
        f"{tls}/host.crt", f"{tls}/host.key", f"{tls}/ca.crt")
    assert conf["ctl"] == {"insecure": False, "cacert": f"{tls}/ca.crt"}
    assert conf["etcd3"]["hosts"] == ["10.213.0.11:2379", "10.213.0.21:2379", "10.213.0.31:2379"]
    assert conf["etcd3"]["protocol"] == "https"
    assert (conf["etcd3"]["username"], conf["etcd3"]["password"]) == ("patroni", "pw-etcd")
    assert conf["etcd3"]["cacert"] == f"{tls}/ca.crt"
    dcs = conf["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 2, 4)
    assert dcs["synchronous_mode"] is True
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["parameters"]["wal_sender_timeout"] == "5s"
    assert dcs["postgresql"]["parameters"]["max_connections"] == 300
    pg = conf["postgresql"]
    assert pg["listen"] == "10.213.0.11:5432" and pg["use_unix_socket"] is True
    assert pg["connect_address"] == "10.213.0.11:5432"
    assert pg["pgpass"] == "/tmp/tenir-test/pgpass"
    verify = {"sslmode": "verify-full", "sslrootcert": f"{tls}/ca.crt"}
    assert pg["authentication"] == {
        "superuser": {"username": "postgres", "password": "pw-superuser", **verify},
        "replication": {"username": "replicator", "password": "pw-replication", **verify},
        "rewind": {"username": "rewind", "password": "pw-rewind", **verify},
    }
    assert pg["pg_hba"] == ["local all all peer",
                            "hostssl replication replicator 10.213.0.0/24 scram-sha-256",
                            "hostssl all all 10.213.0.0/24 scram-sha-256",
                            "hostnossl all all all reject"]
    assert (pg["parameters"]["ssl"], pg["parameters"]["ssl_cert_file"]) == ("on",
                                                                           f"{tls}/host.crt")
    assert pg["parameters"]["password_encryption"] == "scram-sha-256"


def test_patroni_config_honours_overrides() -> None:
    conf = yaml.safe_load(
        _render("patroni", patroni_synchronous_mode=False, patroni_wal_sender_timeout="10s",
                patroni_ttl=30, patroni_loop_wait=5, patroni_retry_timeout=10)
    )
    dcs = conf["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (30, 5, 10)
    assert dcs["synchronous_mode"] is False
    assert dcs["postgresql"]["parameters"]["wal_sender_timeout"] == "10s"


# --- haproxy --------------------------------------------------------------------------------------
def test_haproxy_config() -> None:
    text = _render("haproxy")
    assert "option httpchk OPTIONS /primary" in text
    assert "http-check expect status 200" in text
    assert re.search(r"^\s*default-server .*\binter 500ms\b", text, re.M)
    assert re.search(r"^\s*default-server .*\bon-marked-down shutdown-sessions\b", text, re.M)
    assert re.search(r"^\s*stats socket /run/haproxy/admin\.sock .*\blevel admin\b", text, re.M)
    # the runtime API only on a UNIX socket; the statistics read-only over TLS with a password
    assert len(re.findall(r"^\s*stats socket ", text, re.M)) == 1
    assert "ipv4@" not in text and "stats admin" not in text
    assert re.search(r"^\s*bind 10\.213\.0\.11:9999 ssl crt /etc/haproxy/tls/host\.pem$", text,
                     re.M)
    assert re.search(r"^\s*stats auth tenir-stats:pw-stats$", text, re.M)
    assert re.search(r"^\s*http-request deny deny_status 405 unless METH_GET$", text, re.M)
    assert re.search(r"^\s*bind 10\.213\.0\.11:5000$", text, re.M)
    servers = re.findall(r"^\s*server (\S+) (\S+) .*\bcheck port 8008 check-ssl verify required "
                         r"ca-file /etc/haproxy/tls/ca\.crt$", text, re.M)
    assert servers == [("paris-db", "10.213.0.11:5432"), ("marseille-db", "10.213.0.21:5432")]
    assert not re.search(r"^\s*(user|group) ", text, re.M)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_haproxy_one_server_line_per_backend(count: int) -> None:
    text = _render("haproxy", haproxy_backends=[dict(m) for m in MEMBERS[:count]])
    servers = re.findall(r"^\s*server (\S+) ", text, re.M)
    assert servers == [m["name"] for m in MEMBERS[:count]]


def test_haproxy_drops_privileges_when_a_user_is_given() -> None:
    text = _render("haproxy", haproxy_user="haproxy")
    assert re.search(r"^\s*user haproxy$", text, re.M)
    assert re.search(r"^\s*group haproxy$", text, re.M)


# --- undefined variables --------------------------------------------------------------------------
def _inventory_derived(role: str, name: str) -> bool:
    """Required here: no default, or a default only Ansible can work out (from the groups)."""
    default = role_defaults(role).get(name)
    return name not in role_defaults(role) or "groups[" in str(default) or (
        "ansible_host" in str(default))


REQUIRED = [
    pytest.param(role, name, id=f"{role}-{name}")
    for role, (_, values) in TEMPLATES.items()
    for name in values()
    if _inventory_derived(role, name)
]


@pytest.mark.parametrize(("role", "missing"), REQUIRED)
def test_missing_variable_is_an_error(role: str, missing: str) -> None:
    template, values = TEMPLATES[role]
    given = values()
    del given[missing]
    with pytest.raises(jinja2.UndefinedError, match=missing):
        render(role, template, given)


@pytest.mark.parametrize(
    ("role", "variable"),
    [
        pytest.param("etcd", "etcd_initial_cluster", id="etcd-member-without-address"),
        pytest.param("haproxy", "haproxy_backends", id="haproxy-backend-without-address"),
    ],
)
def test_missing_item_attribute_is_an_error(role: str, variable: str) -> None:
    template, values = TEMPLATES[role]
    given = values()
    given[variable] = [{"name": "lonely"}]
    with pytest.raises(jinja2.UndefinedError):
        render(role, template, given)


@pytest.mark.skipif(not HAPROXY.exists(), reason=f"{HAPROXY} is not installed")
def test_haproxy_check_rejects_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: a config haproxy cannot parse is reported as such."""
    config = tmp_path / "broken.cfg"
    config.write_text(_render("haproxy").replace("option httpchk", "option httpchek"))
    proc = subprocess.run([str(HAPROXY), "-c", "-f", str(config)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0

