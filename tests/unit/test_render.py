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

from cluster.lab.layout import Layout
from cluster.lab.services import ServiceSpec, specs_for
from cluster.render import ROLES_DIR, render, role_defaults
from cluster.topology import Topology
from nodes.config import parse_node_config
from nodes.users import token_digest

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
    }


def zookeeper_values() -> dict[str, Any]:
    return {"zookeeper_members": [{"id": i, **m} for i, m in enumerate(MEMBERS, start=1)]}


def haproxy_values() -> dict[str, Any]:
    return {
        "haproxy_bind_address": "10.213.0.11",
        "haproxy_admin_address": "10.213.0.11",
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
        "paris-db=http://10.213.0.11:2380,"
        "marseille-db=http://10.213.0.21:2380,"
        "witness-quorum=http://10.213.0.31:2380"
    )
    assert conf["initial-cluster-state"] == "new"
    assert conf["initial-cluster-token"] == "tenir-etcd"
    assert conf["listen-peer-urls"] == "http://10.213.0.11:2380"
    assert conf["initial-advertise-peer-urls"] == "http://10.213.0.11:2380"
    assert conf["listen-client-urls"] == "http://10.213.0.11:2379,http://127.0.0.1:2379"
    assert conf["advertise-client-urls"] == "http://10.213.0.11:2379"
    assert conf["data-dir"] == "/var/lib/etcd/tenir"
    assert conf["heartbeat-interval"] == 100
    assert conf["election-timeout"] == 1000
    assert conf["pre-vote"] is True
    assert conf["enable-grpc-gateway"] is True
    assert conf["enable-v2"] is False


def test_etcd_config_honours_overrides() -> None:
    conf = yaml.safe_load(_render("etcd", etcd_pre_vote=False, etcd_peer_port=12380))
    assert conf["pre-vote"] is False
    assert conf["listen-peer-urls"] == "http://10.213.0.11:12380"
    assert conf["initial-cluster"].count(":12380") == 3


# --- patroni --------------------------------------------------------------------------------------
def test_patroni_config() -> None:
    conf = yaml.safe_load(_render("patroni"))
    assert conf["scope"] == "tenir-test"
    assert conf["name"] == "paris-db"
    assert conf["namespace"] == "/service/"
    assert conf["restapi"]["listen"] == "10.213.0.11:8008"
    assert conf["restapi"]["authentication"] == {"username": "patroni", "password": "pw-restapi"}
    assert conf["etcd3"]["hosts"] == ["10.213.0.11:2379", "10.213.0.21:2379", "10.213.0.31:2379"]
    dcs = conf["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 2, 4)
    assert dcs["synchronous_mode"] is True
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["parameters"]["wal_sender_timeout"] == "5s"
    assert dcs["postgresql"]["parameters"]["max_connections"] == 300
    pg = conf["postgresql"]
    assert pg["listen"] == "10.213.0.11,127.0.0.1:5432"
    assert pg["connect_address"] == "10.213.0.11:5432"
    assert pg["pgpass"] == "/tmp/tenir-test/pgpass"
    assert pg["authentication"] == {
        "superuser": {"username": "postgres", "password": "pw-superuser"},
        "replication": {"username": "replicator", "password": "pw-replication"},
        "rewind": {"username": "rewind", "password": "pw-rewind"},
    }
    assert "host replication replicator 127.0.0.1/32 scram-sha-256" in pg["pg_hba"]
    assert "host replication replicator 10.213.0.0/24 scram-sha-256" in pg["pg_hba"]
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
    assert re.search(r"^\s*stats socket ipv4@10\.213\.0\.11:9999 level admin$", text, re.M)
    assert re.search(r"^\s*bind 10\.213\.0\.11:5000$", text, re.M)
    servers = re.findall(r"^\s*server (\S+) (\S+) .*\bcheck port 8008\b", text, re.M)
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
REQUIRED = [
    pytest.param(role, name, id=f"{role}-{name}")
    for role, (_, values) in TEMPLATES.items()
    for name in values()
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


# --- the lab's real configuration -----------------------------------------------------------------
@pytest.fixture
def lab_specs(lab_topology: Topology, lab_secrets: dict[str, str], tmp_path: Path
              ) -> list[ServiceSpec]:
    return specs_for(lab_topology, Layout(tmp_path), lab_secrets)


def test_specs_cover_every_service(lab_specs: list[ServiceSpec]) -> None:
    assert [(s.service, s.host.name) for s in lab_specs] == [
        ("etcd", "paris-db"), ("etcd", "marseille-db"), ("etcd", "witness-quorum"),
        ("patroni", "paris-db"), ("patroni", "marseille-db"),
        ("haproxy", "paris-db"), ("haproxy", "marseille-db"),
        ("carriers", "paris-carriers"), ("carriers", "marseille-carriers"),
        ("node", "paris-node1"), ("node", "paris-node2"),
        ("node", "marseille-node1"), ("node", "marseille-node2"),
    ]


def test_specs_write_nothing(lab_specs: list[ServiceSpec], tmp_path: Path) -> None:
    assert list(tmp_path.iterdir()) == []


def test_spec_configs_live_in_the_host_dir(lab_specs: list[ServiceSpec], tmp_path: Path) -> None:
    for spec in lab_specs:
        assert spec.config.parent == tmp_path / "hosts" / spec.host.name
        # A config is either named on the command line or handed over as the environment.
        assert (str(spec.config) in spec.argv) != spec.env_file


def test_patroni_config_is_private_to_postgres(lab_specs: list[ServiceSpec]) -> None:
    patroni = [s for s in lab_specs if s.service == "patroni"]
    assert len(patroni) == 2
    for spec in patroni:
        assert spec.config_owner == "postgres"
        assert spec.config_mode == 0o600
    for spec in lab_specs:
        if spec.service != "patroni":
            assert spec.config_owner is None
            assert not spec.config_mode & 0o022
        if spec.service in ("node", "carriers"):  # they hold secrets too
            assert spec.config_mode == 0o600


def test_no_secret_in_any_argv(lab_specs: list[ServiceSpec], lab_secrets: dict[str, str]) -> None:
    for spec in lab_specs:
        command_line = " ".join(spec.argv)
        for name, secret in lab_secrets.items():
            assert secret not in command_line, f"{name} secret in {spec.service} argv"


def test_secrets_only_where_they_are_used(lab_specs: list[ServiceSpec],
                                         lab_secrets: dict[str, str]) -> None:
    for spec in lab_specs:
        leaked = [name for name, secret in lab_secrets.items() if secret in spec.config_text]
        expected = {
            "patroni": ["replication", "restapi", "rewind", "superuser"],
            "carriers": ["smpp", "voice_callback"],
            # the API tokens only as digests: the nodes never hold them
            "node": ["ack_key", "app", "smpp", "voice_callback"],
        }.get(spec.service, [])
        assert sorted(leaked) == expected, spec.service


def test_lab_node_configs_load_with_one_user_per_role(
    lab_specs: list[ServiceSpec], lab_secrets: dict[str, str],
) -> None:
    for spec in (s for s in lab_specs if s.service == "node"):
        cfg = parse_node_config(yaml.safe_load(spec.config_text), spec.host.name)
        assert [(u.name, u.role, u.token_sha256) for u in cfg.users] == [
            (f"lab-{role}", role, token_digest(lab_secrets[f"token_{role}"]))
            for role in ("operator", "oncall", "auditor")]
        assert [k.id for k in cfg.ack_keys] == ["lab"]
        assert cfg.carriers.voice_callback_secrets == (lab_secrets["voice_callback"],)


def test_lab_etcd_configs(lab_specs: list[ServiceSpec], tmp_path: Path) -> None:
    etcd = [s for s in lab_specs if s.service == "etcd"]
    for spec in etcd:
        conf = yaml.safe_load(spec.config_text)
        assert conf["name"] == spec.host.name
        assert conf["initial-cluster"] == (
            "paris-db=http://10.213.0.11:2380,"
            "marseille-db=http://10.213.0.21:2380,"
            "witness-quorum=http://10.213.0.31:2380"
        )
        assert conf["initial-cluster-token"] == "tenir-lab-etcd"
        assert conf["data-dir"] == str(tmp_path / "hosts" / spec.host.name / "etcd")
        assert conf["pre-vote"] is True
        assert conf["enable-grpc-gateway"] is True


def test_lab_patroni_configs(lab_specs: list[ServiceSpec], lab_secrets: dict[str, str],
                             tmp_path: Path) -> None:
    for spec in (s for s in lab_specs if s.service == "patroni"):
        conf = yaml.safe_load(spec.config_text)
        host_dir = tmp_path / "hosts" / spec.host.name
        assert conf["scope"] == "tenir-lab"
        assert conf["name"] == spec.host.name
        assert conf["tags"]["site"] == spec.host.site
        dcs = conf["bootstrap"]["dcs"]
        assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 2, 4)
        assert dcs["synchronous_mode"] is True
        assert dcs["postgresql"]["parameters"]["wal_sender_timeout"] == "5s"
        assert conf["etcd3"]["hosts"] == [
            "10.213.0.11:2379", "10.213.0.21:2379", "10.213.0.31:2379",
        ]
        pg = conf["postgresql"]
        assert pg["data_dir"] == str(host_dir / "pgdata")
        assert pg["pgpass"] == str(host_dir / "run" / "pgpass")
        assert pg["parameters"]["unix_socket_directories"] == str(host_dir / "run")
        assert pg["authentication"]["superuser"]["password"] == lab_secrets["superuser"]
        assert pg["authentication"]["replication"]["password"] == lab_secrets["replication"]
        assert pg["authentication"]["rewind"]["password"] == lab_secrets["rewind"]
        assert conf["restapi"]["authentication"]["password"] == lab_secrets["restapi"]
        assert "host replication replicator 127.0.0.1/32 scram-sha-256" in pg["pg_hba"]
        assert "host all all 10.213.0.0/24 scram-sha-256" in pg["pg_hba"]


def test_lab_haproxy_configs(lab_specs: list[ServiceSpec], tmp_path: Path) -> None:
    haproxy = [s for s in lab_specs if s.service == "haproxy"]
    assert len(haproxy) == 2
    for spec in haproxy:
        text = spec.config_text
        address = spec.host.address
        socket = tmp_path / "hosts" / spec.host.name / "haproxy.sock"
        assert re.search(rf"^\s*stats socket {re.escape(str(socket))} .*level admin", text, re.M)
        assert re.search(rf"^\s*bind {re.escape(str(address))}:5000$", text, re.M)
        servers = re.findall(r"^\s*server (\S+) (\S+) ", text, re.M)
        assert servers == [("paris-db", "10.213.0.11:5432"), ("marseille-db", "10.213.0.21:5432")]


@pytest.mark.skipif(not HAPROXY.exists(), reason=f"{HAPROXY} is not installed")
def test_lab_haproxy_configs_pass_haproxy_check(lab_specs: list[ServiceSpec],
                                                tmp_path: Path) -> None:
    haproxy = [s for s in lab_specs if s.service == "haproxy"]
    assert haproxy
    for spec in haproxy:
        assert spec.validate is not None
        assert spec.validate[1:] == ["-c", "-q", "-f"]
        # The config names its admin socket inside the host dir: the directory must exist.
        spec.config.parent.mkdir(parents=True, exist_ok=True)
        spec.config.write_text(spec.config_text, encoding="utf-8")
        proc = subprocess.run([str(HAPROXY), "-c", "-f", str(spec.config)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"{spec.config}:\n{proc.stdout}{proc.stderr}"
        assert "warning" not in (proc.stdout + proc.stderr).lower()


@pytest.mark.skipif(not HAPROXY.exists(), reason=f"{HAPROXY} is not installed")
def test_haproxy_check_rejects_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: a config haproxy cannot parse is reported as such."""
    config = tmp_path / "broken.cfg"
    config.write_text(_render("haproxy").replace("option httpchk", "option httpchek"))
    proc = subprocess.run([str(HAPROXY), "-c", "-f", str(config)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0

