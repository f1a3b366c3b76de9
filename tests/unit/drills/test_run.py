"""Real runs on the fake cluster, through chaostoolkit's runner: a drill that passes leaves a
valid record (steps with times, runner and approver from the nodes, measures against targets)
and a whole cluster; a stop condition or the abort lever mid-drill heals and records "aborted"
with the reason; a heal that fails is said and recorded; one drill at a time."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from failover.drills import runner
from failover.drills.catalog import StopLimits
from failover.drills.lever import ACTIVE_KEY, DrillBusy, Lever
from failover.drills.preflight import whole
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator
from tests.fakes.drill_cluster import SITES, FakeCluster
from tests.unit.drills.support import context, settings, small

pytestmark = pytest.mark.unit


def when_injected(cluster: FakeCluster, action: Callable[[], object]) -> threading.Thread:
    """Run ``action`` once the drill's fault is in (as another operator would)."""

    def watch() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(line.startswith("inject") for line in cluster.log):
                action()
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_losing_the_primary_site_passes_and_leaves_a_record() -> None:
    cluster = FakeCluster()
    server = FakeCoordinationServer()
    drill = small("lose-primary-site")
    said: list[str] = []
    result = runner.run(context(cluster, drill, said, server=server), drill, approval="7")
    assert result.outcome == "passed", (result.reason, said)
    assert result.exit_code == 0
    record = cluster.records[result.run_id or ""]
    assert record is result.record
    assert (record["runner"], record["approver"]) == ("oncall:1111", "operator:2222")
    assert cluster.started_runs == [{"drill": "lose-primary-site", "run_id": result.run_id,
                                     "approval": "7"}]
    assert record["scope"]["sites"] == ["paris"] and record["outcome"] == "passed"
    names = [s["name"] for s in record["steps"]]
    assert names[0] == "check: the coordination quorum has a spare member"
    assert "step: power cut of the primary's site" in names
    assert names[-1] == "rollback: heal whatever the drill still holds broken"
    assert all(s["started_at"] <= s["ended_at"] and s["outcome"] == "ok"
               for s in record["steps"])
    m = record["measured"]
    assert m["rto_s"] is not None and m["rto_s"] <= 5
    assert m["pg_failover_s"] is not None and m["leader_changes"] >= 1
    assert m["complete_s"] is None or m["complete_s"] <= 60
    assert [v["verdict"] for v in record["verdicts"]] == ["not_checked", "not_checked",
                                                         "not_checked", "pass"]
    marks = record["timeline"]["marks"]
    assert [m["kind"] for m in marks if m["kind"] in ("fault", "heal")] == ["fault", "heal"]
    assert any(m["kind"] == "postgres" and "paris-db -> marseille-db" in m["label"]
               for m in marks)
    assert cluster.log[-2:] == ["inject: power cut of site paris", "heal: power cut of site paris"]
    assert whole(cluster.facts(), SITES, standby_site="paris").ok
    assert ACTIVE_KEY not in server.keys  # the lock is released


def test_a_real_campaign_launched_meanwhile_stops_heals_and_records_aborted() -> None:
    cluster = FakeCluster(rate_per_site=150)
    drill = small("lose-primary-site")
    said: list[str] = []
    holder: list[int] = []
    watcher = when_injected(cluster, lambda: holder.append(cluster.launch_real(priority=1)))
    result = runner.run(context(cluster, drill, said), drill, approval="7")
    watcher.join(5)
    assert result.outcome == "aborted" and result.exit_code == 1
    assert result.reason == (f"real campaign {holder[0]} (real, priority 1) was launched during "
                             "the drill")
    record = cluster.records[result.run_id or ""]
    assert record["outcome"] == "aborted" and record["reason"] == result.reason
    assert record["stopped_by"] == "stop condition"
    assert "heal: power cut of site paris" in cluster.log  # the rollbacks healed
    assert cluster.up["paris"]
    own = min(cluster.campaigns)
    assert cluster.cancelled == [own]  # the test campaign does not go on sending
    assert any(f["criticality"] == "medium" and "aborted" in f["description"]
               for f in record["findings"])


def test_a_real_campaign_of_low_priority_does_not_stop_the_drill() -> None:
    cluster = FakeCluster()
    drill = small("lose-witness")
    watcher = when_injected(cluster, lambda: cluster.launch_real(priority=8))
    result = runner.run(context(cluster, drill, []), drill, approval="7")
    watcher.join(5)
    assert result.outcome == "passed", result.reason


def test_the_abort_lever_from_another_process_stops_the_drill() -> None:
    cluster = FakeCluster(rate_per_site=150)
    server = FakeCoordinationServer()
    drill = small("cut-datacenter-link")

    def pull() -> None:
        async def go() -> None:
            await Lever(FakeCoordinator(server, "other-terminal")).request_abort(
                "oncall:9999", "the prefecture calls")
        asyncio.run(go())

    watcher = when_injected(cluster, pull)
    result = runner.run(context(cluster, drill, [], server=server), drill, approval="7")
    watcher.join(5)
    assert result.outcome == "aborted"
    assert result.reason == "aborted by oncall:9999: the prefecture calls"
    assert cluster.records[result.run_id or ""]["stopped_by"] == "lever"
    assert not cluster.link_cut
    assert not server.keys  # lock and abort request both cleared


def test_a_low_delivery_rate_stops_the_drill() -> None:
    cluster = FakeCluster(rate_per_site=150, failover_s=30)  # no promotion: nothing delivers
    drill = small("lose-primary-site", stop=StopLimits(min_rate_per_s=50, min_rate_for_s=0.3,
                                                       real_campaigns=False))
    result = runner.run(context(cluster, drill, []), drill, approval="7")
    assert result.outcome == "aborted"
    assert result.reason is not None and re.match(
        r"the drill's campaign delivered \d+\.\d/s over the last 0\.3 s, under 50/s \(\d+ s "
        r"after the fault\)$", result.reason), result.reason
    assert not cluster.up["paris"] or "heal: power cut of site paris" in cluster.log


def test_a_heal_that_fails_is_said_and_recorded() -> None:
    cluster = FakeCluster()
    cluster.heal_fails = True
    said: list[str] = []
    drill = small("lose-witness")
    result = runner.run(context(cluster, drill, said), drill, approval="7")
    assert result.outcome == "failed"
    record = cluster.records[result.run_id or ""]
    assert any(f["criticality"] == "critical" and "could not heal" in f["description"]
               for f in record["findings"]), record["findings"]
    assert "NOT HEALED: power cut of site witness" in said


def test_one_drill_at_a_time() -> None:
    cluster = FakeCluster()
    server = FakeCoordinationServer()

    async def hold() -> None:
        await Lever(FakeCoordinator(server, "x")).acquire("lose-witness-20260101T000000Z",
                                                         "lose-witness", "someone", "their-pc")

    asyncio.run(hold())
    drill = small("lose-primary-site")
    with pytest.raises(DrillBusy, match="drill lose-witness-20260101T000000Z"):
        runner.run(context(cluster, drill, [], server=server), drill, approval="7")
    assert cluster.log == [] and cluster.started_runs == []


def test_a_refused_real_run_changes_nothing() -> None:
    cluster = FakeCluster()
    cluster.up["witness"] = False
    before = cluster.snapshot()
    drill = small("lose-primary-site")
    result = runner.run(context(cluster, drill, []), drill, approval="7")
    assert result.outcome == "refused"
    assert result.reason is not None and "only 2 of 3 coordination members" in result.reason
    assert cluster.snapshot() == before and cluster.log == []


def test_a_missed_target_fails_the_drill_with_a_finding() -> None:
    cluster = FakeCluster(failover_s=0.4)
    drill = small("lose-primary-site")
    result = runner.run(context(cluster, drill, [], s=settings(rto_s=0.0)), drill,
                        approval="7")
    assert result.outcome == "failed"
    assert result.reason is not None and "above the target 0 s" in result.reason
    record = cluster.records[result.run_id or ""]
    assert any(f["criticality"] == "high" and f["description"].startswith(
        "time to the first message after the fault") for f in record["findings"])


def test_the_switchover_drill_moves_the_primary_and_back() -> None:
    cluster = FakeCluster()
    drill = replace(small("switchover-and-back"))
    result = runner.run(context(cluster, drill, []), drill, approval="7")
    assert result.outcome == "passed", result.reason
    assert cluster.log[-2:] == ["inject: planned switchover to marseille",
                                "heal: planned switchover to marseille"]
    assert cluster.primary == "paris"


def test_a_run_keeps_its_journal_history_record_and_log(drill_dir: Path) -> None:
    import json

    cluster = FakeCluster()
    drill = small("lose-witness")
    result = runner.run(context(cluster, drill, []), drill, approval="7")
    folder = drill_dir / (result.run_id or "")
    assert result.folder == folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "drill.log", "history.jsonl", "journal.json", "record.json", "verdicts.json"]
    assert json.loads((folder / "record.json").read_text()) == result.record
    lines = [json.loads(x) for x in (folder / "drill.log").read_text().splitlines()]
    assert lines and all({"time", "level", "node", "site", "campaign"} <= set(x) for x in lines)
    assert any(x["logger"] == "chaostoolkit" for x in lines)


def test_a_link_cut_names_the_side_cut_from_the_primary_as_failed(drill_dir: Path) -> None:
    """The duplicates checker bounds resends by the failed side's batches: a link cut that
    named no side gave a bound of 0, and the lab's drill failed on the standby site's resends
    (its nodes fence themselves and their work moves)."""
    import json

    cluster = FakeCluster()
    drill = small("cut-datacenter-link")
    result = runner.run(context(cluster, drill, []), drill, approval="7")
    assert result.outcome == "passed", result.reason
    ops = [json.loads(x) for x in (drill_dir / (result.run_id or "") / "history.jsonl"
                                   ).read_text().splitlines()]
    [fault] = [op for op in ops if op["f"] == "fault" and op["type"] == "invoke"]
    assert sorted(fault["value"]["sites"]) == ["marseille", "paris"]
    assert fault["value"]["site"] == "marseille"  # paris holds the primary


def test_a_lag_that_settles_within_seconds_passes_and_one_that_lasts_is_refused() -> None:
    """Patroni's lag is a loop old: the check reads it again for a few seconds before refusing
    (the lab's lose-primary-site drill once refused a standby 9 KB behind, caught up at once)."""
    cluster = FakeCluster()
    cluster.lag = 9224
    threading.Timer(0.5, lambda: setattr(cluster, "lag", 0)).start()
    drill = small("lose-witness")
    patient = replace(settings(), lag_settle_s=3.0)  # the lab's is 6 s
    result = runner.run(context(cluster, drill, [], s=patient), drill, approval="7")
    assert result.outcome == "passed", result.reason

    lasting = FakeCluster()
    lasting.lag = 9224
    result = runner.run(context(lasting, drill, []), drill, approval="7")
    assert result.outcome == "refused"
    assert result.reason is not None and "lags 9,224 bytes" in result.reason
