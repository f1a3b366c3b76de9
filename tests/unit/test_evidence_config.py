"""The node's ``evidence`` section: rendered by the tenir_node role from keys made by
``tenir evidence keygen``, loaded with its keys, and refused at load naming the key at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from failover.evidence import keys
from nodes.config import NodeConfigError, parse_node_config
from tests.unit.test_node_config import rendered

pytestmark = pytest.mark.unit


@pytest.fixture
def key_files(tmp_path: Path) -> dict[str, str]:
    site, _ = keys.write_pair(keys.generate("tenir/paris"), tmp_path, "paris")
    _, wpub = keys.write_pair(keys.generate("tenir/witness", keys.COSIGNATURE_V1), tmp_path,
                              "witness")
    return {"site": str(site), "site_pub": str(tmp_path / "paris.pub"), "witness": str(wpub)}


def test_no_origin_renders_no_evidence() -> None:
    assert parse_node_config(rendered()).evidence is None


def test_the_rendered_section_loads_its_keys(key_files: dict[str, str]) -> None:
    cfg = parse_node_config(rendered(
        tenir_node_evidence_origin="tenir.invalid/lab/ledger",
        tenir_node_evidence_site_key=key_files["site"],
        tenir_node_evidence_keys=[key_files["site_pub"], key_files["witness"]],
        tenir_node_evidence_witness_url="http://10.213.0.30:8095",
        tenir_node_evidence_witness_key=key_files["witness"]))
    ev = cfg.evidence
    assert ev is not None and ev.signer is not None and ev.witness_key is not None
    assert ev.signer.name == "tenir/paris" and ev.witness_key.key_type == keys.COSIGNATURE_V1
    assert len(ev.keys) == 2 and ev.checkpoint_interval_s == 10


@pytest.mark.parametrize(("change", "key", "problem"), [
    ({"tenir_node_evidence_witness_url": None}, "evidence.witness_url", "need a witness"),
    ({"tenir_node_evidence_witness_key": "SITE"}, "evidence.witness_key", "witness cosigner"),
    ({"tenir_node_evidence_site_key": "/nonexistent.key"}, "evidence.site_key", "No such"),
    ({"tenir_node_evidence_origin": "has space"}, "evidence.origin", "without spaces"),
])
def test_a_bad_section_is_refused_naming_the_key(key_files: dict[str, str], change: dict,  # type: ignore[type-arg]
                                                 key: str, problem: str) -> None:
    values = {"tenir_node_evidence_origin": "tenir.invalid/lab/ledger",
              "tenir_node_evidence_site_key": key_files["site"],
              "tenir_node_evidence_keys": [key_files["site_pub"], key_files["witness"]],
              "tenir_node_evidence_witness_url": "http://10.213.0.30:8095",
              "tenir_node_evidence_witness_key": key_files["witness"]}
    values.update({k: key_files["site_pub"] if v == "SITE" else v for k, v in change.items()})
    with pytest.raises(NodeConfigError) as info:
        parse_node_config(rendered(**values))
    assert info.value.key == key and problem in str(info.value)
