"""What ``tenir switchover`` and ``tenir site drain`` print, run through the CLI on fakes
(``tests/fakes/operations.py``): every step with its duration, each line within 80 columns
(long sentences wrapped, their continuation indented), and exit 1 on a failure or a refusal."""

from __future__ import annotations

import re
from typing import Any

import pytest

import failover.drain
import failover.switchover
from cluster import cli
from cluster.topology import Topology
from failover.switchover import Switchover
from tests.api.conftest import OPERATOR
from tests.fakes.operations import NODES, PG, Drains, FakeHAProxy, FakePatroni, World

pytestmark = pytest.mark.unit


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def joined(lines: list[str]) -> list[str]:
    """Wrapped lines joined back: a continuation starts with more indent than a step."""
    out: list[str] = []
    for line in lines:
        if line.startswith("    ") and out:
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return out


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    w = World()
    monkeypatch.setenv("TENIR_TOKEN", OPERATOR)

    def build(topo: Topology, *, say: Any, timeout: float, token: str | None = None) -> Switchover:
        return Switchover(sites=list(PG), postgres_of_site=PG, nodes=NODES, drains=Drains(w),
                          cluster=w, patroni=FakePatroni(w),
                          haproxies={h: FakeHAProxy(w, h) for h in ("paris-db", "marseille-db")},
                          events=w, say=say, timeout=timeout, poll_s=0.01, settle_s=0)

    monkeypatch.setattr(failover.switchover, "build_switchover", build)
    monkeypatch.setattr(failover.drain, "CoordinationDrains", lambda topo: Drains(w))
    monkeypatch.setattr(failover.drain, "NodesClusterProbe", lambda topo, token: w)
    monkeypatch.setattr(failover.drain, "NodeApiEvents", lambda topo: w)
    return w


def test_switchover_prints_each_step_with_its_duration_within_80_columns(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "switchover", "--to", "marseille")
    assert (code, err) == (0, [])
    assert max(len(line) for line in out) <= 80, out
    assert any(line.startswith("    ") for line in out)  # step 3 is longer than 80: wrapped
    steps = joined(out)
    assert [s.split(".")[0] for s in steps[:6]] == [str(i) for i in range(1, 7)]
    assert all(re.search(r"\(\d+\.\d s\)$", s) for s in steps[:6]), steps
    assert steps[2].startswith("3. site paris finished the 2 batches it held (campaign 4) in ")
    assert re.match(r"switchover to marseille done in \d+\.\d s: PostgreSQL primary "
                    r"marseille-db \(was paris-db\)", steps[6])
    assert len(steps) == 7


def test_a_failed_switchover_exits_1_within_80_columns(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.switch_fails = RuntimeError("412 candidate not healthy")
    code, out, err = run(capsys, "switchover", "--to", "marseille")
    assert code == 1
    assert joined(out)[-1].startswith("4. patroni switchover: FAILED after ")
    message = " ".join(line.strip() for line in err)
    assert message.startswith("tenir: switchover to marseille FAILED after ")
    assert message.endswith("restored: site paris undrained")
    assert max(len(line) for line in out + err) <= 80


def test_drain_wait_says_what_moved_and_how_long_it_took(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "site", "drain", "paris", "--wait")
    assert (code, err) == (0, [])
    lines = joined(out)
    assert lines[0] == ("site paris drained: its alert nodes take no new batch and finish the "
                        "ones they hold")
    assert re.match(r"site paris finished the 2 batches it held \(campaign 4\) in \d+\.\d s and "
                    r"takes no new one; the other site holds 3 batches", lines[1]), lines
    assert max(len(line) for line in out) <= 80, out
    assert [e[0] for e in world.events] == ["operator.drain"]


def test_draining_the_second_site_is_refused_with_exit_1(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.drained.add("marseille")
    code, out, err = run(capsys, "site", "drain", "paris")
    assert (code, out) == (1, [])
    assert " ".join(line.strip() for line in err) == (
        "tenir: site marseille is already drained")
    assert world.drained == {"marseille"}
