"""An alert node's configuration: the ``tenir_node`` role's template renders a file that
``nodes.config`` loads, and a bad value is refused at load with an error naming its key
(here ``patroni_urls``, the Patroni REST APIs the watchdog reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.render import ROLES_DIR, render, role_defaults
from nodes.config import NodeConfigError, load_node_config, parse_node_config

pytestmark = pytest.mark.unit


def node_values(**overrides: Any) -> dict[str, Any]:
    return {
        "tenir_node_name": "paris-node1", "tenir_node_site": "paris",
        "tenir_node_address": "10.213.0.12", "tenir_node_dsn": "postgresql://app@10.213.0.11:5000/x",
        "tenir_node_token_operator": "o" * 20, "tenir_node_token_oncall": "c" * 20,
        "tenir_node_token_auditor": "a" * 20, "tenir_node_carriers_host": "10.213.0.14",
        "tenir_node_smpp_port": 2775, "tenir_node_smpp_system_id": "tenir",
        "tenir_node_smpp_password": "pw", "tenir_node_smtp_port": 2525,
        "tenir_node_voice_port": 8090, "tenir_node_coordination_backend": "etcd",
        "tenir_node_coordination_endpoints": ["10.213.0.11:2379"],
        "tenir_node_coordination_namespace": "/tenir/tenir-lab/",
        "tenir_node_membership_ttl": 5, "tenir_node_coordination_retry_timeout": 1.5,
        "tenir_node_fencing_safety": 2, "tenir_node_watchdog_cycle_s": 0.5,
        "tenir_node_patroni_urls": [],
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
    urls = ["http://10.213.0.11:8008", "http://10.213.0.21:8008/"]
    cfg = parse_node_config(rendered(tenir_node_patroni_urls=urls))
    assert cfg.patroni_urls == ("http://10.213.0.11:8008", "http://10.213.0.21:8008")


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
