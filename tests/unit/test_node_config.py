"""An alert node's configuration: the ``tenir_node`` role's template renders a file that
``nodes.config`` loads, and a bad value is refused at load with an error naming its key
(``patroni_urls``, the users and their tokens, the signing keys, the HTTP limits), never
repeating a value that may be secret."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.render import ROLES_DIR, render, role_defaults
from nodes.api.limits import HttpLimits
from nodes.config import NodeConfigError, load_node_config, parse_node_config
from nodes.users import token_digest
from tests.tls_kit import TestPki

pytestmark = pytest.mark.unit

# What the tenir_tls role puts in the node's TLS directory: ca.crt, host.crt, host.key.
TLS_DIR = Path(tempfile.mkdtemp(prefix="tenir-node-tls-"))
atexit.register(shutil.rmtree, TLS_DIR, True)
TestPki(TLS_DIR).files("host")


def node_values(**overrides: Any) -> dict[str, Any]:
    return {
        "tenir_node_name": "paris-node1", "tenir_node_site": "paris",
        "tenir_node_address": "10.213.0.12", "tenir_node_dsn": "postgresql://app@10.213.0.11:5000/x",
        "tenir_node_users": [
            {"name": "alice", "role": "operator", "token_sha256": token_digest("o" * 20)},
            {"name": "olivier", "role": "oncall", "token_sha256": token_digest("c" * 20)},
            {"name": "audit-bot", "role": "auditor", "token": "a" * 20}],
        "tenir_node_ack_keys": [{"id": "k2", "secret": "n" * 32}, {"id": "k1", "secret": "p" * 32}],
        "tenir_node_voice_callback_secrets": ["v" * 32],
        "tenir_node_carriers_host": "10.213.0.14",
        "tenir_node_smpp_port": 2775, "tenir_node_smpp_system_id": "tenir",
        "tenir_node_smpp_password": "pw", "tenir_node_smtp_port": 2525,
        "tenir_node_voice_port": 8090, "tenir_node_coordination_backend": "etcd",
        "tenir_node_coordination_endpoints": ["10.213.0.11:2379"],
        "tenir_node_coordination_namespace": "/tenir/tenir-lab/",
        "tenir_node_membership_ttl": 5, "tenir_node_coordination_retry_timeout": 1.5,
        "tenir_node_fencing_safety": 2, "tenir_node_watchdog_cycle_s": 0.5,
        "tenir_node_patroni_urls": [], "tenir_node_tls_dir": str(TLS_DIR),
        **overrides,
    }


def rendered(**overrides: Any) -> dict[str, Any]:
    data = yaml.safe_load(render("tenir_node", "node.yml.j2", node_values(**overrides)))
    assert isinstance(data, dict)
    return data


def test_role_defaults_and_argument_specs_agree() -> None:
    specs = yaml.safe_load((ROLES_DIR / "tenir_node" / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    documented = {name: o["default"] for name, o in options.items() if "default" in o}
    assert documented == role_defaults("tenir_node")
    assert options["tenir_node_patroni_urls"]["type"] == "list"


def test_patroni_urls_default_to_none(tmp_path: Path) -> None:
    data = rendered()
    assert data["patroni_urls"] == []
    path = tmp_path / "node.yml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_node_config(path)
    assert cfg.patroni_urls == ()
    assert cfg.coordination is not None and cfg.coordination.watchdog_cycle_s == 0.5


def test_patroni_urls_are_rendered_and_loaded() -> None:
    urls = ["https://10.213.0.11:8008", "https://10.213.0.21:8008/"]
    cfg = parse_node_config(rendered(tenir_node_patroni_urls=urls))
    assert cfg.patroni_urls == ("https://10.213.0.11:8008", "https://10.213.0.21:8008")


def test_a_config_without_the_key_has_no_patroni_urls() -> None:
    data = rendered()
    del data["patroni_urls"]
    assert parse_node_config(data).patroni_urls == ()


@pytest.mark.parametrize(("value", "key", "problem"), [
    ("http://10.213.0.11:8008", "patroni_urls", "must be a list"),
    (["10.213.0.11:8008"], "patroni_urls[0]", "must be http://host:port"),
    (["http://10.213.0.11:8008", "ftp://x:21"], "patroni_urls[1]", "must be http://host:port"),
    (["http://10.213.0.11:8008/cluster"], "patroni_urls[0]", "must be http://host:port"),
    (["http://:8008"], "patroni_urls[0]", "must be http://host:port"),
    ([8008], "patroni_urls[0]", "must be http://host:port"),
    (["http://10.213.0.11:80080"], "patroni_urls[0]", "out of range"),
    (["http://patroni:s3cret@10.213.0.11:8008"], "patroni_urls[0]", "must not carry credentials"),
    (["ftp://patroni:s3cret@10.213.0.11:21"], "patroni_urls[0]", "must not carry credentials"),
])
def test_bad_patroni_urls_are_refused_naming_the_key(value: Any, key: str, problem: str) -> None:
    data = rendered()
    data["patroni_urls"] = value
    with pytest.raises(NodeConfigError, match=problem) as refused:
        parse_node_config(data, "node.yml")
    assert refused.value.key == key
    assert "s3cret" not in str(refused.value)
    assert str(refused.value).startswith(f"node.yml: {key}: ")


def test_unsafe_switches_are_refused_without_the_environment_variable() -> None:
    data = rendered(tenir_node_unsafe_test_switches=["watchdog_off"])
    with pytest.raises(NodeConfigError, match=r"switches: .*TENIR_UNSAFE_TEST_SWITCHES"):
        parse_node_config(data, "node.yml", environ={})
    with pytest.raises(NodeConfigError, match="unsafe_test_switches"):
        parse_node_config(data, "node.yml", environ={"TENIR_UNSAFE_TEST_SWITCHES": "yes"})
    cfg = parse_node_config(data, "node.yml", environ={"TENIR_UNSAFE_TEST_SWITCHES": "1"})
    assert cfg.unsafe == frozenset({"watchdog_off"})
    assert parse_node_config(rendered(), environ={}).unsafe == frozenset()  # the default: none
    bad = rendered(tenir_node_unsafe_test_switches=["fencing_off"])
    with pytest.raises(NodeConfigError, match="unknown switch 'fencing_off'"):
        parse_node_config(bad, environ={"TENIR_UNSAFE_TEST_SWITCHES": "1"})


def test_a_node_with_the_watchdog_switched_off_says_so_loudly(
        caplog: pytest.LogCaptureFixture) -> None:
    from nodes.main import watchdog_wanted

    data = rendered(tenir_node_unsafe_test_switches=["watchdog_off"])
    cfg = parse_node_config(data, environ={"TENIR_UNSAFE_TEST_SWITCHES": "1"})
    with caplog.at_level("CRITICAL"):
        assert watchdog_wanted(cfg) is False
    assert "NO WATCHDOG" in caplog.text and caplog.records[0].levelname == "CRITICAL"
    assert watchdog_wanted(parse_node_config(rendered(), environ={})) is True
def test_users_keys_and_limits_are_rendered_and_loaded() -> None:
    cfg = parse_node_config(rendered(tenir_node_http={
        "header_timeout_s": 3, "max_connections": 50, "max_connections_per_address": 10}))
    assert [(u.name, u.role) for u in cfg.users] == [
        ("alice", "operator"), ("olivier", "oncall"), ("audit-bot", "auditor")]
    assert cfg.users[2].token_sha256 == token_digest("a" * 20)  # a plain token is hashed
    assert [k.id for k in cfg.ack_keys] == ["k2", "k1"]  # the first signs
    assert cfg.carriers.voice_callback_secrets == ("v" * 32,)
    assert cfg.http == HttpLimits(header_timeout_s=3.0, max_connections=50,
                                  max_connections_per_address=10)
    assert parse_node_config(rendered()).http == HttpLimits()
    for secret in ("n" * 32, "v" * 32, "a" * 20, "postgresql://"):
        assert secret not in repr(cfg)


SECRET = "s3cr3t-value-that-must-not-leak-0123456789"


@pytest.mark.parametrize(("change", "key", "problem"), [
    (lambda d: d["ack_keys"][0].update(secret=12345), "ack_keys[0].secret",
     "must be a string, got an integer"),
    (lambda d: d["ack_keys"][0].update(secret=SECRET[:10]), "ack_keys[0].secret",
     "at least 32 characters"),
    (lambda d: d["ack_keys"].append({"id": "k2", "secret": SECRET}), "ack_keys",
     "same id"),
    (lambda d: d["carriers"].update(voice_callback_secrets=[SECRET[:20]]),
     "carriers.voice_callback_secrets[0]", "must be a string of 32"),
    (lambda d: d["carriers"].update(smpp_password=["a", SECRET]), "carriers.smpp_password",
     "must be a string, got a list"),
    (lambda d: d.update(dsn={"password": SECRET}), "dsn", "must be a string, got a mapping"),
    (lambda d: d["users"][0].update(token=SECRET), "users[0]", "exactly one"),
    (lambda d: d["users"][2].update(token=SECRET[:8]), "users[2].token", "at least 16"),
    (lambda d: d["users"][0].update(role="root"), "users[0].role", "must be one of"),
    (lambda d: d["users"].append(dict(d["users"][0], name="bob")), "users", "same token"),
    (lambda d: d.update(users=[]), "users", "at least one user"),
    (lambda d: d.update(http={"max_connections": 0}), "http.max_connections",
     "positive"),
    (lambda d: d.update(http={"keepalive": 5}), "http.keepalive", "unknown key"),
])
def test_bad_security_settings_are_refused_without_echoing_a_secret(
    change: Any, key: str, problem: str,
) -> None:
    data = rendered()
    change(data)
    with pytest.raises(NodeConfigError, match=problem) as refused:
        parse_node_config(data, "node.yml")
    assert refused.value.key == key
    assert SECRET[:8] not in str(refused.value)


def test_the_store_grace_is_rendered_loaded_and_bounded() -> None:
    cfg = parse_node_config(rendered(), environ={})
    assert cfg.coordination is not None and cfg.coordination.store_grace_s == 3.0
    assert parse_node_config(rendered(tenir_node_store_grace_s=4.5)).coordination.store_grace_s \
        == 4.5  # type: ignore[union-attr]
    data = rendered()
    del data["coordination"]["store_grace_s"]  # a file of the previous version
    assert parse_node_config(data).coordination.store_grace_s == 3.0  # type: ignore[union-attr]
    for bad in (1.0, 6.0):  # below retry_timeout 1.5, above ttl 5
        with pytest.raises(NodeConfigError,
                           match=r"coordination\.store_grace_s: must be >= retry_timeout"):
            parse_node_config(rendered(tenir_node_store_grace_s=bad), "node.yml")


def test_the_unsafe_environment_line_is_rendered_only_when_asked() -> None:
    values = node_values(ansible_managed="managed", tenir_node_venv="/opt/tenir/venv",
                         tenir_node_config_dir="/etc/tenir", tenir_node_drain_deadline_s=10)
    unit = render("tenir_node", "tenir-node.service.j2", values)
    assert "TENIR_UNSAFE_TEST_SWITCHES" not in unit
    unit = render("tenir_node", "tenir-node.service.j2",
                  {**values, "tenir_node_unsafe_test_environment": True})
    assert "\nEnvironment=TENIR_UNSAFE_TEST_SWITCHES=1\n" in unit


def test_the_journal_and_the_reserve_are_rendered_loaded_and_bounded() -> None:
    cfg = parse_node_config(rendered())
    assert cfg.journal_dir == "/var/lib/tenir/journal"  # under the unit's StateDirectory=tenir
    assert (cfg.claim_ahead_s, cfg.claim_ahead_max) == (25.0, 256)
    cfg = parse_node_config(rendered(tenir_node_journal_dir="/srv/j/", tenir_node_claim_ahead_s=0,
                                     tenir_node_claim_ahead_max=3))
    assert (cfg.journal_dir, cfg.claim_ahead_s, cfg.claim_ahead_max) == ("/srv/j", 0.0, 3)
    data = rendered()
    del data["journal_dir"], data["claim_ahead_s"], data["claim_ahead_max"]
    cfg = parse_node_config(data)  # a config rendered before them: the defaults
    assert (cfg.journal_dir, cfg.claim_ahead_s, cfg.claim_ahead_max) == (
        "/var/lib/tenir/journal", 25.0, 256)
    for key, value, problem in (("journal_dir", "journal", "absolute path"),
                                ("journal_dir", 3, "must be a string"),
                                ("claim_ahead_s", -1, "between 0"),
                                ("claim_ahead_max", 5000, "between 0 and 1024")):
        with pytest.raises(NodeConfigError, match=f"{key}: .*{problem}"):
            parse_node_config({**rendered(), key: value})


def test_drill_intervals_are_rendered_and_loaded() -> None:
    """The inventory's tenir_drill_intervals reach the node, which reports overdue drills."""
    assert "drills" not in rendered(tenir_node_drill_intervals={})
    data = rendered(tenir_node_drill_intervals={"lose-witness": "half-yearly",
                                                "lose-primary-site": "90d"})
    cfg = parse_node_config(data)
    assert cfg.drill_intervals == {"lose-primary-site": 90 * 86400.0,
                                   "lose-witness": 182 * 86400.0}


def test_a_bad_drill_interval_is_refused_naming_its_key() -> None:
    with pytest.raises(NodeConfigError, match=r"drills\.intervals\.lose-witness: 'soon' is not "
                                              "an interval"):
        parse_node_config(rendered(tenir_node_drill_intervals={"lose-witness": "soon"}))
def test_tls_is_rendered_and_a_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    cfg = parse_node_config(rendered())
    assert cfg.public_url == "https://10.213.0.12:8080"
    assert cfg.tls is not None and cfg.tls.cert == TLS_DIR / "host.crt"
    assert cfg.carriers.tls.enabled and cfg.carriers.tls.ca == str(TLS_DIR / "ca.crt")
    other = TestPki(tmp_path).files("other")
    data = rendered()
    data["tls"]["key"] = str(other.key)
    with pytest.raises(NodeConfigError, match=r"tls\.key: cannot be read, or does not match"):
        parse_node_config(data)
    data = rendered()
    data["public_url"] = "http://10.213.0.12:8080"
    with pytest.raises(NodeConfigError, match="public_url: must be https://"):
        parse_node_config(data)


def test_zookeeper_nodes_get_their_digest_user() -> None:
    cfg = parse_node_config(rendered(tenir_node_coordination_backend="zookeeper",
                                     tenir_node_zookeeper_password="zk-pw-0123456789"))
    assert cfg.coordination is not None
    assert cfg.coordination.zk_digest == "tenir-nodes:zk-pw-0123456789"
    assert "zk-pw" not in repr(cfg)
