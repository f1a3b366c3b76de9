"""Business measures from a recorded history (chaos's collectors and checkers) and the samples:
the time to the first message after the fault, outcomes lost (rpo), references sent twice
(duplicates), and beside them PostgreSQL's failover and the leader changes; findings and the
outcome follow from them."""

from __future__ import annotations

import pytest

from failover.drills.measure import measure, missed_targets
from failover.drills.record import findings_of, outcome_of
from failover.drills.stops import Sample
from tests.unit.chaos.builder import T0, Run
from tests.unit.drills.support import TARGETS

pytestmark = pytest.mark.unit


def site_loss_history(lose_one: bool = False, resend: bool = False) -> Run:
    r = Run()
    r.launch(1, 4)
    r.claim(1, 1, "paris-node1", 0.5)
    r.outcome(1, 1, 1.0, node="paris-node1")
    r.outcome(1, 2, 1.5, node="paris-node1")
    r.submit("paris", "1:1:sms:0", 1.0)
    r.submit("paris", "1:2:sms:0", 1.5)
    r.read(2.0)
    r.fault(2.1, site="paris")
    r.claim(1, 2, "marseille-node1", 24.0, site="marseille")
    r.outcome(1, 3, 24.5, epoch=2, node="marseille-node1")
    r.outcome(1, 4, 26.0, epoch=2, node="marseille-node1")
    if resend:
        r.submit("marseille", "1:1:sms:0", 24.2)
    r.complete(1, 27.0)
    if lose_one:  # outcome 2 is gone from the final read: acknowledged and lost
        del r.finals[1]["attempts"]["1:2:sms:0"]
    r.final(1, 4)
    return r


SAMPLES = [Sample(at=T0 + t, primary=p, leader=leader)
           for t, p, leader in ((1, "paris-db", "paris-db"), (2, "paris-db", "paris-db"),
                                (12, None, "marseille-db"), (22, "marseille-db",
                                                             "marseille-db"))]


def test_the_business_measures_of_a_site_loss() -> None:
    r = site_loss_history()
    m = measure(r.h, SAMPLES, campaign=1, launched_at=T0, fault_at=T0 + 2.1,
                done_at_fault=2, invariants=("recipients", "rpo", "duplicates", "progress"),
                targets=TARGETS)
    v = m.values
    assert v["rto_s"] == pytest.approx(22.4, abs=1e-3)  # 24.5 - 2.1
    assert v["max_gap_s"] == pytest.approx(22.4, abs=1e-3)
    assert (v["rpo_s"], v["lost"], v["sent_twice"]) == (0.0, 0.0, 0.0)
    assert v["complete_s"] == pytest.approx(27.0)
    assert v["pg_failover_s"] == pytest.approx(19.9)  # the sample at 22 s
    assert v["leader_changes"] == 1
    assert [x["verdict"] for x in m.verdicts] == ["pass", "pass", "pass", "pass"]
    assert missed_targets(v, TARGETS) == ["time to the first message after the fault "
                                          "22.4 s above the target 5 s"]


def test_a_lost_outcome_and_a_resend_are_measured_and_become_critical_findings() -> None:
    r = site_loss_history(lose_one=True, resend=True)
    m = measure(r.h, [], campaign=1, launched_at=T0, fault_at=T0 + 2.1, done_at_fault=None,
                invariants=("recipients", "rpo", "duplicates"), targets=TARGETS)
    assert m.values["lost"] == 1 and m.values["rpo_s"] == pytest.approx(0.6, abs=1e-3)
    assert m.values["sent_twice"] == 1
    verdicts = {v["invariant"]: v["verdict"] for v in m.verdicts}
    # recipient 1 had its final outcome before the fault: sending it again is a violation
    assert verdicts == {"recipients": "pass", "rpo": "fail", "duplicates": "fail"}
    findings = findings_of(m, TARGETS, outcome="failed", reason=None, steps=[],
                           heal_failures=[], owner="oncall")
    crit = {f["description"].split(":")[0]: f["criticality"] for f in findings}
    assert crit["invariant rpo failed"] == "critical"
    assert crit["outcomes lost 1 above the target 0"] == "critical"
    assert crit["invariant duplicates failed"] == "high"
    outcome, reason = outcome_of(stopped=None, measures=m, targets=TARGETS, steps=[],
                                 heal_failures=[])
    assert outcome == "failed" and reason is not None and "rpo:" in reason


def test_without_an_observer_the_invariants_are_not_checked_and_say_why() -> None:
    from chaos.history import History

    samples = [Sample(at=T0 + t, done=d) for t, d in ((1, 10), (2, 20), (5, 20), (9, 35))]
    m = measure(History(), samples, campaign=1, launched_at=T0, fault_at=T0 + 3,
                done_at_fault=20, invariants=("recipients", "rpo", "duplicates"),
                targets=TARGETS)
    assert m.values["rto_s"] == 6.0  # the first sample after the fault with more done
    assert (m.values["rpo_s"], m.values["lost"], m.values["sent_twice"]) == (None, None, None)
    assert [(v["verdict"], v["detail"]) for v in m.verdicts] == [
        ("not_checked", "no store observer (no DSN)"),
        ("not_checked", "no store observer (no DSN)"),
        ("not_checked", "no carrier submission log (real carriers keep theirs)")]


def test_a_stop_makes_the_outcome_aborted_whatever_else() -> None:
    from failover.drills.measure import Measures

    outcome, reason = outcome_of(stopped="aborted by x: y", measures=Measures(),
                                 targets=TARGETS, steps=[], heal_failures=[])
    assert (outcome, reason) == ("aborted", "aborted by x: y")


def test_only_the_drills_campaign_is_judged() -> None:
    """Another campaign of the database, seen by the observer without a final read, and whose
    reference a carrier received twice, is not the drill's to judge."""
    r = site_loss_history()
    r.outcome(9, 1, 1.5, batch=90, node="paris-node2")  # someone else's campaign
    r.submit("paris", "9:1:sms:0", 1.4)
    r.submit("paris", "9:1:sms:0", 24.0)  # and sent twice: not the drill's either
    m = measure(r.h, [], campaign=1, launched_at=T0, fault_at=T0 + 2.1, done_at_fault=None,
                invariants=("recipients", "rpo", "duplicates"), targets=TARGETS)
    assert [v["verdict"] for v in m.verdicts] == ["pass", "pass", "pass"]
    from chaos.checkers import duplicates, rpo
    from failover.drills.measure import only_campaigns

    # the whole history: the carriers' logs know no campaign, campaign 9's resend is a violation
    assert duplicates.check(r.h).validity == "invalid"
    # rpo judges only the campaigns the history launched (chaos-run): campaign 9's outcome,
    # without a final read, is left out rather than making it unsure
    whole = rpo.check(r.h)
    assert (whole.validity, whole.figures["outcomes_checked"]) == ("valid", 2)
    assert len(only_campaigns(r.h, {1}).of("outcome", "ok")) == 4
