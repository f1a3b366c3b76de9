"""Scenarios as data: the shipped matrix loads, and a bad file is refused naming the file and
the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos.checkers.run import check_all
from chaos.scenario import FAULTS, SCENARIO_DIR, ScenarioError, load_all, load_scenario
from tests.unit.chaos.builder import Run

pytestmark = pytest.mark.unit

MATRIX = {  # issue 9's matrix: every kind of fault has a scenario
    "node-kill": "kill_node", "node-freeze": "freeze_node", "site-power-cut": "site_power_cut",
    "site-isolation": "isolate_site", "link-cut": "cut_link", "witness-loss": "witness_loss",
    "pg-postmaster-kill": "kill_postmaster", "patroni-kill": "kill_patroni",
    "coordination-leader-kill": "kill_coordination_leader",
    "coordination-member-kill": "kill_coordination_member", "haproxy-kill": "kill_haproxy",
    "carrier-refuse": "carrier", "carrier-timeout": "carrier", "carrier-throttle": "carrier",
    "carrier-slow": "carrier", "carrier-drop-receipts": "carrier",
    "degraded-link": "degraded_link", "double-fault": "site_power_cut",
}


def test_the_whole_matrix_is_shipped_and_valid() -> None:
    scenarios = {s.name: s for s in load_all()}
    assert set(scenarios) == set(MATRIX)
    for name, fault in MATRIX.items():
        s = scenarios[name]
        assert s.faults[0].name == fault
        assert "middle" in s.moments and s.population > 0
    assert {f.name for s in scenarios.values() for f in s.faults} == set(FAULTS)
    assert len(scenarios["double-fault"].faults) == 2
    assert scenarios["double-fault"].faults[1].after_s == 20
    modes = {s.faults[0].params["mode"] for s in scenarios.values()
             if s.faults[0].name == "carrier"}
    assert modes == {"refuse", "timeout", "throttle", "slow", "drop_receipts"}
    assert {"etcd", "zookeeper"} <= set(scenarios["node-kill"].backends)
    assert scenarios["node-kill"].at("end").moment == "end"
    with pytest.raises(ScenarioError, match=r"node-kill\.yaml: moments: 'later'"):
        scenarios["node-kill"].at("later")


def _good() -> dict[str, Any]:
    data = yaml.safe_load((SCENARIO_DIR / "node-kill.yaml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(("change", "key"), [
    (lambda d: d.pop("faults"), "faults"),
    (lambda d: d.update(faults=[{"name": "meteor"}]), "faults[0].name"),
    (lambda d: d["faults"][0]["params"].pop("node"), "faults[0].params.node"),
    (lambda d: d["faults"][0]["params"].update(colour="red"), "faults[0].params.colour"),
    (lambda d: d.update(faults=[{"name": "carrier", "params": {
        "site": "paris", "channel": "fax", "mode": "refuse"}}]), "faults[0].params.channel"),
    (lambda d: d.update(faults=[{"name": "degraded_link", "params": {
        "site_a": "paris", "site_b": "marseille", "rtt_ms": 10, "loss": 1.5}}]),
     "faults[0].params.loss"),
    (lambda d: d["faults"][0].update(after_s=-1), "faults[0].after_s"),
    (lambda d: d.update(moments=["start", "noon"]), "moments[1]"),
    (lambda d: d.update(moments=[]), "moments"),
    (lambda d: d["durations"].pop("timeout_s"), "durations.timeout_s"),
    (lambda d: d["durations"].update(fault_s="long"), "durations.fault_s"),
    (lambda d: d["campaign"].update(population=0), "campaign.population"),
    (lambda d: d["campaign"].update(batch_size=2.5), "campaign.batch_size"),
    (lambda d: d.update(invariants=["recipients", "happiness"]), "invariants[1]"),
    (lambda d: d["tolerances"].pop("progress_bound_s"), "tolerances.progress_bound_s"),
    (lambda d: d["tolerances"].update(expect_refusals="yes"), "tolerances.expect_refusals"),
    (lambda d: d.update(backends=["consul"]), "backends[0]"),
    (lambda d: d.update(name="other"), "name"),
    (lambda d: d.update(surprise=1), "surprise"),
])
def test_a_bad_scenario_is_refused_naming_the_file_and_key(
        tmp_path: Path, change: Any, key: str) -> None:
    data = copy.deepcopy(_good())
    change(data)
    path = tmp_path / "node-kill.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert err.value.key == key
    assert str(err.value).startswith(f"{path}: {key}: ")


def test_unreadable_yaml_and_an_empty_directory_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("faults: [unclosed")
    with pytest.raises(ScenarioError, match=r"x\.yaml: \(file\)"):
        load_scenario(bad)
    empty = tmp_path / "none"
    empty.mkdir()
    with pytest.raises(ScenarioError, match="no scenario"):
        load_all(empty)


def test_check_all_runs_the_scenarios_invariants_with_its_tolerances() -> None:
    node_kill = load_scenario(SCENARIO_DIR / "node-kill.yaml")
    r = Run()
    r.launch(1, 1)
    r.claim(1, 1, "paris-node1", at=0.1)
    r.submit("paris", "1:1:sms:0", at=0.5)
    r.outcome(1, 1, at=1.0)
    r.claim(1, 1, "paris-node1", at=1.1, kind="write", current_epoch=1, rows=1)
    r.claim(1, 1, "paris-node1", at=1.2, kind="finish")
    r.read(at=1.9)
    r.fault(at=2.0, nodes=["paris-node1"])
    r.heal(at=3.0)
    r.complete(1, at=1.3)
    r.final(1, 1)
    verdicts = {v.checker: v.validity for v in check_all(r.h, node_kill)}
    assert list(verdicts) == list(node_kill.invariants)
    assert verdicts == {"recipients": "valid", "rpo": "valid", "duplicates": "valid",
                        "fencing": "valid", "watchdog": "unknown", "progress": "valid"}
