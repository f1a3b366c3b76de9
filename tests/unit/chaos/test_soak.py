"""The soak: its schedule is a pure function of the seed, and a short soak on the fake lab keeps
campaigns running while it injects, heals everything and judges the whole history."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chaos.scenario import load_all
from chaos.soak import cost_s, parse_duration, run_soak, schedule, soak_scenario
from cluster.topology import load_topology
from tests.fakes.lab import FakeLab
from tests.unit.chaos.played import FakeEnv

pytestmark = pytest.mark.unit
MATRIX = load_all()


def test_the_same_seed_gives_the_same_schedule_another_seed_another() -> None:
    one = schedule(42, 600, MATRIX, "etcd")
    assert one == schedule(42, 600, MATRIX, "etcd")
    assert one != schedule(43, 600, MATRIX, "etcd")
    assert [e.as_dict() for e in one] == [e.as_dict() for e in schedule(42, 600, MATRIX,
                                                                         "etcd")]


def test_a_schedule_fits_its_duration_and_the_backend() -> None:
    by_name = {s.name: s for s in MATRIX}
    events = schedule(7, 3600, MATRIX, "zookeeper")
    assert len(events) > 5
    assert all("zookeeper" in by_name[e.scenario].backends for e in events)
    spent = sum(e.pause_s + cost_s(by_name[e.scenario]) for e in events)
    assert spent <= 3600
    assert all(20 <= e.pause_s <= 60 for e in events)
    assert len(schedule(7, 1, MATRIX, "etcd")) == 1  # at least one fault
    # over many seeds every scenario of the backend is drawn
    drawn = {e.scenario for seed in range(40) for e in schedule(seed, 1800, MATRIX, "etcd")}
    assert drawn == {s.name for s in MATRIX if "etcd" in s.backends}


def test_durations_are_read_or_refused_clearly() -> None:
    assert [parse_duration(t) for t in ("600", "90s", "10m", "1h30m", "2.5m")] == [
        600, 90, 600, 5400, 150]
    for bad in ("", "10 minutes", "m", "0", "1h1x"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_the_soak_is_judged_with_the_loosest_tolerances() -> None:
    judge = soak_scenario(MATRIX)
    assert judge.invariants == ("recipients", "rpo", "duplicates", "fencing", "watchdog",
                                "progress")
    assert judge.tolerances["progress_bound_s"] == max(
        s.tolerances["progress_bound_s"] for s in MATRIX)
    assert judge.tolerances["rpo_exposure"] is True
    assert "expect_refusals" not in judge.tolerances


def test_a_short_soak_injects_heals_and_judges_continuous_campaigns(
        lab_inventory_path: Path) -> None:
    lab = FakeLab(load_topology(lab_inventory_path))
    env = FakeEnv(lab)
    kill = [s for s in MATRIX if s.name == "node-kill"]

    async def no_wait(s: float) -> None:  # pauses of 20-60 s and the breath between campaigns
        await asyncio.sleep(min(s, 0.05))

    record, history, events = asyncio.run(run_soak(env, kill, 2.0, seed=5, population=40,
                                                   sleep=no_wait))
    assert [e.scenario for e in events] == ["node-kill"]
    assert record.error is None, record.error
    assert "signal paris-node1 node SIGKILL" in lab.log and lab.log[-1] == "up never"
    assert len(record.campaigns) >= 2  # the next campaign started after the first
    finals = history.of("final", "ok")
    assert [op.value["campaign"] for op in finals] == record.campaigns
    assert {v.checker: v.validity for v in record.verdicts}["recipients"] == "valid"
    assert {v.checker for v in record.verdicts} == set(soak_scenario(kill).invariants)
