"""The scenario runner on a fake lab (``played.py``: collectors that play the campaign into the
history), so that the order of what the runner does, its heals after failures and its verdicts
can be checked without a lab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaos.history import History
from chaos.report import problems, save, table
from chaos.runner import run_scenario, until_holding
from chaos.scenario import Scenario, parse_scenario
from cluster.topology import Topology, load_topology
from tests.fakes.lab import FakeLab
from tests.unit.chaos.played import RECIPIENTS, FakeEnv

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]
def _scenario(fault: str, params: dict[str, Any], moment: str = "middle",
              invariants: tuple[str, ...] = ("recipients", "rpo", "duplicates", "progress"),
              ) -> Scenario:
    return parse_scenario({
        "name": "t", "faults": [{"name": fault, "params": params}],
        "moments": ["start", "middle", "end", "during-pg-failover"],
        "durations": {"fault_s": 0.05, "settle_s": 0, "timeout_s": 5},
        "campaign": {"population": RECIPIENTS, "scenario": "demo", "batch_size": 10},
        "invariants": list(invariants),
        "tolerances": {"progress_bound_s": 5, "rpo_window_s": 0.5}}, "t.yaml").at(moment)


@pytest.fixture
def topo(lab_inventory_path: Path) -> Topology:
    return load_topology(lab_inventory_path)


async def test_a_run_injects_at_its_moment_heals_and_judges(topo: Topology,
                                                            tmp_path: Path) -> None:
    lab = FakeLab(topo)
    env = FakeEnv(lab)
    record, h = await run_scenario(env, _scenario("kill_node", {"node": "paris-node1"}), seed=3)
    assert record.error is None and record.ok, record
    assert [v.checker for v in record.verdicts] == ["recipients", "rpo", "duplicates",
                                                    "progress"]
    assert all(v.validity == "valid" for v in record.verdicts), record.verdicts
    assert lab.log == ["prepare", "roles", "signal paris-node1 node SIGKILL", "up never"]
    fault = h.of("fault", "invoke")[0]
    assert fault.value["nodes"] == ["paris-node1"]
    # the nemesis read every collector right before the fault, at the middle or later
    assert h.ops[fault.index - 1].f == "read"
    seen = {op.value["recipient"] for op in h.of("outcome") if op.index < fault.index}
    assert RECIPIENTS // 2 <= len(seen) <= RECIPIENTS * 3 // 4
    order = [op.f for op in h if op.f in ("launch", "fault", "heal", "complete", "final")]
    assert order == ["launch", "launch", "fault", "fault", "heal", "heal", "complete", "final"]
    assert record.resume is not None and record.resume.sites == ("marseille", "paris")
    where = save(tmp_path, record, h)
    assert {p.name for p in where.iterdir()} == {"history.jsonl", "verdicts.json", "run.json"}
    assert len(History.read(where / "history.jsonl")) == len(h)
    lines = table([record])
    assert all(len(line) <= 80 for line in lines[:-1])
    assert lines[1].split()[:9] == ["t", "middle", "etcd", "ok", "ok", "ok", ".", ".", "ok"]
    assert lines[0].split()[:4] == ["scenario", "moment", "coord", "rcp"]  # was "coordrcp"


async def test_a_fault_that_cannot_be_injected_is_healed_and_fails_the_run(
        topo: Topology) -> None:
    lab = FakeLab(topo, stopped={("paris-node1", "node")})
    record, h = await run_scenario(FakeEnv(lab), _scenario("kill_node", {"node": "paris-node1"}))
    assert not record.ok
    assert record.error is not None and "was not running" in record.error
    assert lab.log[-1] == "up never"  # healed all the same
    assert [op.type for op in h.of("fault")] == ["invoke", "fail"]
    assert any("not run to the end" in line for line in problems([record]))
    assert table([record])[1].split()[3] == "ERR"


async def test_during_a_pg_failover_the_primary_patroni_is_stopped_first_healed_last(
        topo: Topology) -> None:
    lab = FakeLab(topo)
    record, h = await run_scenario(FakeEnv(lab), _scenario(
        "site_power_cut", {"site": "standby", "silence_s": 0}, moment="during-pg-failover"))
    assert record.ok, record
    assert lab.log == ["prepare", "roles", "stop paris-db patroni", "kill_site marseille",
                       *[f"clear tenir-{h.name}" for h in topo.site_hosts("marseille")],
                       "up never", "start paris-db patroni", "up never"]
    assert [op.value["name"] for op in h.of("fault", "invoke")] == ["pg_failover",
                                                                    "site_power_cut"]


async def test_a_refused_launch_is_said(topo: Topology) -> None:
    record, h = await run_scenario(FakeEnv(FakeLab(topo), refuse=True),
                                   _scenario("kill_node", {"node": "paris-node1"}))
    assert record.error is not None and "not launched: 400 scenario: unknown" in record.error
    assert record.verdicts == [] and h.of("fault") == []


async def test_a_run_stops_waiting_for_a_moment_that_never_comes(topo: Topology) -> None:
    env = FakeEnv(FakeLab(topo), stall=True)
    scenario = parse_scenario({
        "name": "t", "faults": [{"name": "kill_node", "params": {"node": "paris-node1"}}],
        "moments": ["end"], "durations": {"fault_s": 0, "settle_s": 0, "timeout_s": 0.3},
        "campaign": {"population": 10_000, "scenario": "demo", "batch_size": 10},
        "invariants": ["recipients"]}, "t.yaml").at("end")
    record, _ = await run_scenario(env, scenario)
    assert record.error is not None and "did not reach its end within 0.3 s" in record.error
    assert "signal" not in " ".join(env.lab.log)


async def test_a_node_fault_is_injected_once_its_node_holds_a_batch(topo: Topology) -> None:
    """The runner's wiring: paris-node1 claims only after the middle; the kill waits for it."""
    record, h = await run_scenario(FakeEnv(FakeLab(topo), late="paris-node1"),
                                   _scenario("kill_node", {"node": "paris-node1"}))
    assert record.error is None, record
    claim = next(op for op in h.of("claim") if op.value["node"] == "paris-node1")
    assert claim.index < h.of("fault", "invoke")[0].index


async def test_a_node_fault_waits_until_its_node_holds_a_batch() -> None:
    """At the middle of a short campaign a node may hold nothing (its share sent, the rest in
    the others' reserves): freezing it would test nothing. The runner reads on until it holds
    a batch, within a bound."""
    h = History()
    reads = 0

    async def read() -> None:
        nonlocal reads
        reads += 1
        if reads == 3:
            h.add("node:paris-node1", "ok", "claim", {
                "batch": 7, "epoch": 1, "node": "paris-node1", "site": "paris",
                "kind": "claim", "lease_until": None, "prev_owner": None, "prev_epoch": None})
        if reads == 5:
            h.add("node:paris-node1", "ok", "claim", {
                "batch": 7, "epoch": 1, "node": "paris-node1", "site": "paris",
                "kind": "finish", "lease_until": None})

    async def no_sleep(_: float) -> None:
        return None

    assert await until_holding(h, ["paris-node1"], read, no_sleep)
    assert reads == 3
    assert await until_holding(h, ["paris-node1"], read, no_sleep)  # still holds it
    reads = 4
    assert not await until_holding(h, ["paris-node1"], read, no_sleep, timeout_s=0.5)
    assert reads == 4 + 5  # bounded: timeout / poll reads, then False
