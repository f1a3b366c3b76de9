"""The preflight checks refuse with every reason at once, each naming what it saw; the stop
conditions judge the samples; the schedule says what is overdue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from failover.drills import preflight as p
from failover.drills.catalog import StopLimits
from failover.drills.facts import CampaignFact, Facts
from failover.drills.schedule import IntervalError, LastRun, due_state, parse_interval
from failover.drills.stops import Sample, StopJudge, lagging, low_rate, real_campaign
from tests.fakes.drill_cluster import SITES, FakeCluster

pytestmark = pytest.mark.unit


def healthy() -> Facts:
    return FakeCluster().facts()


def test_a_healthy_cluster_passes_every_check() -> None:
    f = healthy()
    checks = [p.quorum_has_spare(f), p.sync_standby_streaming(f), p.carriers_healthy(f, SITES),
              p.no_site_drained(f), p.no_real_campaign(f, 5)]
    assert all(c.ok for c in checks), checks
    assert p.refusal(checks) is None
    assert checks[1].sentence == ("primary paris-db (paris), synchronous standby marseille-db "
                                  "(marseille) streaming with a lag of 0 bytes")


def test_every_reason_to_refuse_is_said_at_once() -> None:
    cluster = FakeCluster()
    cluster.up["witness"] = False
    cluster.lag = 1024
    cluster.drained.add("paris")
    cluster.carriers_down.add("marseille")
    real = cluster.launch_real(priority=2)
    f = cluster.facts()
    checks = [p.quorum_has_spare(f), p.sync_standby_streaming(f), p.carriers_healthy(f, SITES),
              p.no_site_drained(f), p.no_real_campaign(f, 5)]
    assert not any(c.ok for c in checks)
    text = p.refusal(checks)
    assert text is not None
    for words in ("only 2 of 3 coordination members are healthy (down: witness-quorum "
                  "(witness))", "lags 1,024 bytes behind primary paris-db",
                  "site marseille: no node's sms, email, voice carrier works",
                  "site paris is drained", f"real campaign {real} (real, priority 2)"):
        assert words in text, (words, text)


def test_a_low_priority_campaign_or_the_drills_own_do_not_refuse() -> None:
    cluster = FakeCluster()
    cluster.launch_real(priority=7)
    own = cluster.launch("demo", population=5, group=None, batch_size=1)
    assert p.no_real_campaign(cluster.facts(), 5, own={own}).ok
    assert not p.no_real_campaign(cluster.facts(), 7, own={own}).ok


def test_no_standby_or_unknown_parts_refuse() -> None:
    assert not p.sync_standby_streaming(Facts()).ok
    assert "no Patroni REST API answered" in p.sync_standby_streaming(Facts()).sentence
    assert not p.no_site_drained(Facts()).ok
    assert not p.carriers_healthy(Facts(), SITES).ok
    assert not p.quorum_has_spare(Facts()).ok


def test_whole_names_the_standby_site() -> None:
    cluster = FakeCluster()
    assert p.whole(cluster.facts(), SITES, standby_site="marseille").ok
    check = p.whole(cluster.facts(), SITES, standby_site="paris")
    assert not check.ok and "is in marseille, not paris" in check.sentence


# --- stop conditions --------------------------------------------------------------------------

LIMITS = StopLimits(min_rate_per_s=10, min_rate_for_s=30, max_lag_bytes=1000, max_lag_for_s=5)


def samples(rate: float, seconds: int, start: float = 0.0, state: str = "running",
            lag: int | None = 0) -> list[Sample]:
    return [Sample(at=start + t, done=int(rate * t), state=state, lag_bytes=lag)
            for t in range(seconds + 1)]


def test_a_low_rate_is_judged_only_once_the_window_has_passed() -> None:
    assert low_rate(samples(2, 20), LIMITS, launched_at=0.0) is None  # 20 s < 30 s window
    reason = low_rate(samples(2, 40), LIMITS, launched_at=0.0, fault_at=25.0)
    assert reason == ("the drill's campaign delivered 2.0/s over the last 30 s, under 10/s "
                      "(15 s after the fault)")
    assert low_rate(samples(50, 40), LIMITS, launched_at=0.0) is None
    assert low_rate(samples(2, 40, state="completed"), LIMITS, launched_at=0.0) is None


def test_a_real_campaign_launched_meanwhile_is_named() -> None:
    running = [CampaignFact(3, "crue", "running", 1), CampaignFact(4, "demo", "running", 2),
               CampaignFact(5, "info", "running", 8), CampaignFact(6, "x", "completed", 1)]
    assert real_campaign(running, known={3, 6}, own={4}, priority=5) is None
    found = real_campaign(running, known=set(), own={4}, priority=5)
    assert found == "real campaign 3 (crue, priority 1) was launched during the drill"


def test_a_real_campaign_launched_and_completed_between_two_samples_is_named() -> None:
    # the lab's on-call group: launched and completed within a second, never seen running
    seen = [CampaignFact(4, "demo", "running", 2), CampaignFact(6, "astreinte", "completed", 1)]
    assert real_campaign(seen, known={2}, own={4}, priority=5) == (
        "real campaign 6 (astreinte, priority 1) was launched during the drill")
    assert real_campaign(seen, known={2, 6}, own={4}, priority=5) is None  # seen at the start


def test_campaigns_unreadable_for_a_minute_stop_the_drill_but_a_failover_does_not() -> None:
    judge = StopJudge(LIMITS, priority=5, known_campaigns=set())
    ok = (CampaignFact(4, "demo", "running", 2),)
    # readable, then 30 s unreadable (a PostgreSQL failover answers 503): go on
    history = [Sample(at=float(t), campaigns=ok if t < 10 else None) for t in range(40)]
    assert judge.judge(history, own={4}, launched_at=0.0, fault_at=None) is None
    # unreadable from 9 s to 70 s: the drill can no longer see a real campaign
    history += [Sample(at=float(t)) for t in range(40, 71)]
    assert judge.judge(history, own={4}, launched_at=0.0, fault_at=None) == (
        "the running campaigns could not be read for 61 s: the drill cannot tell whether a real "
        "campaign was launched")
    # never readable since the first sample counts too; readable again clears it
    assert judge.judge([Sample(at=0.0), Sample(at=60.0)], own=set(), launched_at=0.0,
                       fault_at=None) is not None
    assert judge.judge([*history, Sample(at=71.0, campaigns=ok)], own={4}, launched_at=0.0,
                       fault_at=None) is None


def test_lag_must_last_to_stop() -> None:
    assert lagging(samples(1, 3, lag=5000), LIMITS) is None  # 3 s < 5 s
    assert lagging(samples(1, 10, lag=5000), LIMITS) is not None
    mixed = samples(1, 10, lag=5000)
    mixed[-2] = Sample(at=mixed[-2].at, lag_bytes=0)
    assert lagging(mixed, LIMITS) is None
    assert lagging(samples(1, 10, lag=None), LIMITS) is None  # no standby: nothing to judge


def test_the_judge_says_the_first_reason() -> None:
    judge = StopJudge(LIMITS, priority=5, known_campaigns=set())
    s = samples(50, 10)
    s[-1] = Sample(at=s[-1].at, done=500, state="running",
                   campaigns=(CampaignFact(9, "crue", "running", 1),))
    assert judge.judge(s, own=set(), launched_at=0.0, fault_at=None) == (
        "real campaign 9 (crue, priority 1) was launched during the drill")


# --- schedule ---------------------------------------------------------------------------------

def test_intervals_are_words_or_spans_and_errors_name_the_key() -> None:
    assert parse_interval("quarterly") == 91 * 86400
    assert parse_interval("90d") == 90 * 86400
    assert parse_interval("2w") == 14 * 86400
    with pytest.raises(IntervalError, match=r"^tenir_drill_intervals\.x: 'often' is not"):
        parse_interval("often", "tenir_drill_intervals.x")
    with pytest.raises(IntervalError, match="at least an hour"):
        parse_interval("10m")


def test_a_drill_is_overdue_when_none_completed_within_its_interval() -> None:
    now = datetime(2026, 11, 20, tzinfo=UTC)
    day = 86400.0
    never = due_state("lose-witness", 30 * day, None, None, now)
    assert never.overdue and never.due is None
    recent = LastRun(now - timedelta(days=10), "passed", "a")
    fresh = due_state("lose-witness", 30 * day, recent, recent, now)
    assert not fresh.overdue and fresh.due == now + timedelta(days=20)
    old = LastRun(now - timedelta(days=40), "failed", "b")
    aborted = LastRun(now - timedelta(days=1), "aborted", "c")
    late = due_state("lose-witness", 30 * day, aborted, old, now)
    assert late.overdue and late.to_json()["last_run"]["outcome"] == "aborted"
