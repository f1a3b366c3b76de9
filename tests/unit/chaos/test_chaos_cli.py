"""``tenir chaos``'s parts that need no lab: choosing scenarios, the schedule command, the
verdict table's width, and the marked section of docs/chaos.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.checkers.verdict import Verdict
from chaos.matrix_doc import BEGIN, END, MarkerError, rewrite, section
from chaos.report import RunRecord, table
from chaos.resume import Resume
from chaos.scenario import INVARIANTS, load_all
from cluster.chaos_cli import ChaosUsageError, scenario_named, select
from cluster.cli import main

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]


def test_scenarios_are_chosen_by_backend_and_moment() -> None:
    every = load_all()
    on_zk = select(every, "zookeeper", "middle", every=True)
    assert {s.name for s in on_zk} == {"coordination-leader-kill", "coordination-member-kill",
                                       "node-freeze", "node-kill", "site-power-cut"}
    assert all(s.moment == "middle" for s in on_zk)
    assert {s.name for s in select(every, "etcd", "during-pg-failover", every=True)} == {
        "node-kill", "site-power-cut"}
    with pytest.raises(ChaosUsageError, match="carrier-refuse does not run on zookeeper"):
        select([scenario_named("carrier-refuse")], "zookeeper", "middle", every=False)
    with pytest.raises(ChaosUsageError, match="no moment during-pg-failover"):
        select([scenario_named("witness-loss")], "etcd", "during-pg-failover", every=False)
    with pytest.raises(ChaosUsageError, match=r"no scenario 'nope' .*node-kill"):
        scenario_named("nope")


def test_the_schedule_command_prints_the_soak_it_would_run(
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["chaos", "schedule", "--duration", "10m", "--seed", "42",
            "--coordination", "etcd"]
    assert main([*argv, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == first  # the same seed, the same faults
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("soak of 10m with seed 42 on etcd:")
    assert all(len(line) <= 80 for line in out)
    assert main(["chaos", "schedule", "--duration", "ten", "--coordination", "etcd"]) == 1
    assert "duration 'ten'" in capsys.readouterr().err
    assert main(["chaos", "run", "--coordination", "etcd"]) == 1
    assert "name one scenario, or --all" in capsys.readouterr().err


def _record(name: str, moment: str, validity: str = "valid") -> RunRecord:
    verdicts = [Verdict(n, validity if n == "rpo" else "valid", "s",  # type: ignore[arg-type]
                        figures={"duplicates": 12} if n == "duplicates" else {})
                for n in INVARIANTS]
    return RunRecord(name, moment, "zookeeper", 0, verdicts, Resume(0.05, 21.7, ("marseille",)))


def test_the_verdict_table_fits_80_columns() -> None:
    lines = table([_record("coordination-member-kill", "during-pg-failover"),
                   _record("node-kill", "end", "invalid")])
    assert all(len(line) <= 80 for line in lines[:-1])
    assert lines[1].split() == ["coordination-member-kill", "pg-fo", "zk", "ok", "ok", "ok",
                                "ok", "ok", "ok", "0.1/21.7", "12"]
    assert lines[2].split()[4] == "BAD"


def test_the_matrix_table_replaces_only_the_marked_section() -> None:
    text = f"# Chaos\nbefore\n{BEGIN}\nold table\n{END}\nafter\n"
    lines = section(["t1", "t2"], "2030-01-01 00:00 UTC", "abc1234", 2, 1, "tenir chaos matrix")
    out = rewrite(text, lines)
    assert out.startswith("# Chaos\nbefore\n") and out.endswith("\nafter\n")
    assert "old table" not in out and "```\nt1\nt2\n```" in out
    assert "commit `abc1234` (2 runs, 1 of 2 runs NOT valid)" in out
    assert rewrite(out, lines) == out  # idempotent
    with pytest.raises(MarkerError, match="needs exactly one"):
        rewrite("no markers\n", lines)


def test_docs_chaos_has_the_markers() -> None:
    text = (REPO / "docs" / "chaos.md").read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
