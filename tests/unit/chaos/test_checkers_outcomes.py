"""The recipients, rpo and progress checkers on synthetic histories: valid and invalid."""

from __future__ import annotations

import pytest

from chaos.checkers import progress, recipients, rpo
from tests.unit.chaos.builder import T0, Run

pytestmark = pytest.mark.unit


def test_recipients_valid_when_each_has_one_final_outcome() -> None:
    r = Run()
    r.launch(1, 3)
    for rid in (1, 2, 3):
        r.outcome(1, rid, at=1 + rid)
    r.final(1, 3)
    v = recipients.check(r.h)
    assert v.validity == "valid", v
    assert v.figures["recipients"] == 3


def test_recipients_invalid_when_one_is_pending_or_missing() -> None:
    r = Run()
    launch = r.launch(1, 3)
    r.outcome(1, 1, at=1)
    r.outcome(1, 2, at=2)
    final = r.final(1, 3, pending=1)
    v = recipients.check(r.h)
    assert v.validity == "invalid"
    assert "2 of 3 recipients" in v.offences[0].reason
    assert v.offences[0].ops == (launch.index, final.index)


def test_recipients_invalid_when_a_final_outcome_is_replaced_but_not_by_an_ack() -> None:
    r = Run()
    r.launch(1, 1)
    first = r.outcome(1, 1, at=1, attempt=0)
    second = r.outcome(1, 1, at=2, attempt=1, state="failed")
    r.final(1, 1)
    v = recipients.check(r.h)
    assert v.validity == "invalid"
    assert v.offences[0].ops == (first.index, second.index)
    r2 = Run()
    r2.launch(1, 1)
    r2.outcome(1, 1, at=1, attempt=0)
    r2.outcome(1, 1, at=2, attempt=1, state="acknowledged")
    r2.final(1, 1)
    assert recipients.check(r2.h).validity == "valid"


def test_recipients_unknown_without_a_final_read() -> None:
    r = Run()
    r.launch(1, 2)
    assert recipients.check(r.h).validity == "unknown"


def _before_and_after_fault() -> Run:
    r = Run()
    r.launch(1, 3)
    r.outcome(1, 1, at=1.0, cmid="m1", epoch=1)
    r.outcome(1, 2, at=2.0, cmid="m2", epoch=1)
    r.read(at=4.9)
    r.fault(at=5.0)
    r.outcome(1, 3, at=7.0, cmid="m3", epoch=2)
    return r


def test_rpo_valid_when_everything_committed_before_the_fault_is_kept() -> None:
    r = _before_and_after_fault()
    r.final(1, 3)
    v = rpo.check(r.h, max_window_s=0.5)
    assert v.validity == "valid", v
    assert v.figures["outcomes_checked"] == 2
    assert v.figures["window_s"] == pytest.approx(0.1)


def test_rpo_invalid_when_an_outcome_is_lost_even_if_resent_with_the_same_reference() -> None:
    r = _before_and_after_fault()
    # Deleted behind the store's back, then resent after the takeover: same reference, but a
    # new carrier message id, a newer epoch and a later recorded time.
    final = r.final(1, 3)
    final.value["attempts"]["1:2:sms:0"] = {"carrier_message_id": "m2-again", "epoch": 2,
                                            "recorded_at": T0 + 8.0, "state": "delivered"}
    v = rpo.check(r.h)
    assert v.validity == "invalid"
    assert "1:2:sms:0" in v.offences[0].reason and "m2-again" in v.offences[0].reason
    r2 = _before_and_after_fault()
    final2 = r2.final(1, 3)
    del final2.value["attempts"]["1:1:sms:0"]
    v2 = rpo.check(r2.h)
    assert v2.validity == "invalid" and "is gone" in v2.offences[0].reason


def test_rpo_a_receipt_may_fill_a_null_carrier_id_but_not_change_it() -> None:
    r = Run()
    r.launch(1, 1)
    r.outcome(1, 1, at=1.0, cmid=None)
    r.read(at=2.0)
    r.fault(at=2.0)
    final = r.final(1, 1)
    final.value["attempts"]["1:1:sms:0"]["carrier_message_id"] = "late"
    assert rpo.check(r.h).validity == "valid"


def test_rpo_unknown_when_the_last_read_is_too_far_from_the_fault() -> None:
    r = Run()
    r.launch(1, 1)
    r.outcome(1, 1, at=1.0)
    r.read(at=1.0)
    r.fault(at=5.0)
    r.final(1, 1)
    v = rpo.check(r.h, max_window_s=1.0)
    assert v.validity == "unknown" and "4.000 s" in v.summary


def _double_fault(sync_lost_at: float | None) -> Run:
    """The standby's site lost at 5 (the watchdog records the lost synchronous copy at 11), two
    outcomes written after that, then the primary's site lost at 20."""
    r = Run()
    r.launch(1, 4)
    r.outcome(1, 1, at=1.0, cmid="m1")
    r.read(at=4.9)
    r.fault(at=5.0, site="marseille")
    if sync_lost_at is not None:
        r.h.add("node:paris-node1", "ok", "event", {"kind": "postgres.sync_lost",
                                                    "node": "paris-node1", "site": "paris"},
                at=T0 + sync_lost_at)
    r.outcome(1, 2, at=12.0, cmid="m2")
    r.outcome(1, 3, at=13.0, cmid="m3")
    r.read(at=19.9)
    r.fault(at=20.0, site="paris")
    return r


def test_rpo_reports_what_was_lost_without_a_synchronous_copy_within_its_bound() -> None:
    r = _double_fault(sync_lost_at=11.0)
    final = r.final(1, 4)
    del final.value["attempts"]["1:2:sms:0"]  # written while paris was alone, lost with it
    assert rpo.check(r.h).validity == "invalid"  # without the exposure tolerance
    v = rpo.check(r.h, exposure=True)
    assert v.validity == "valid", v
    assert (v.figures["lost_exposed"], v.figures["written_exposed"]) == (1, 2)
    # the window opens at the fault before the record, not at the record
    assert v.figures["exposure_s"] == pytest.approx(r.h.ops[-1].at - (T0 + 5.0))
    assert "1 lost, all written while PostgreSQL had no synchronous copy (bound 2" in v.summary


def test_rpo_a_loss_outside_the_windows_or_without_a_record_stays_invalid() -> None:
    r = _double_fault(sync_lost_at=11.0)
    final = r.final(1, 4)
    del final.value["attempts"]["1:1:sms:0"]  # committed while the copy existed
    v = rpo.check(r.h, exposure=True)
    assert v.validity == "invalid" and "1:1:sms:0" in v.offences[0].reason
    r2 = _double_fault(sync_lost_at=None)  # nobody recorded a lost copy
    final2 = r2.final(1, 4)
    del final2.value["attempts"]["1:2:sms:0"]
    assert rpo.check(r2.h, exposure=True).validity == "invalid"


def test_rpo_judges_only_the_campaigns_the_run_launched() -> None:
    r = _before_and_after_fault()
    r.outcome(9, 1, at=1.5)  # an earlier run's campaign, no final read here
    r.final(1, 3)
    assert rpo.check(r.h).validity == "valid"


def test_progress_valid_within_the_bound_invalid_beyond_or_never() -> None:
    r = Run()
    r.launch(1, 3)
    r.fault(at=2.0)
    r.heal(at=10.0)
    r.complete(1, at=25.0)
    v = progress.check(r.h, bound_s=20.0)
    assert v.validity == "valid" and v.figures["completion_s"] == {1: pytest.approx(15.0)}
    late = progress.check(r.h, bound_s=10.0)
    assert late.validity == "invalid" and "15.0 s after the heal" in late.offences[0].reason
    r2 = Run()
    r2.launch(1, 3)
    r2.heal(at=3.0)
    v2 = progress.check(r2.h, bound_s=60.0)
    assert v2.validity == "invalid" and "never completed" in v2.offences[0].reason


def test_progress_judges_each_campaign_against_the_heal_that_preceded_its_completion() -> None:
    r = Run()
    r.launch(1, 3, at=0.0)
    r.fault(at=2.0)
    r.heal(at=10.0)
    r.complete(1, at=60.0)  # 50 s after the heal that delayed it
    r.launch(2, 3, at=61.0)
    r.fault(at=70.0)
    r.heal(at=200.0)  # a later heal must not hide the first campaign's delay
    r.complete(2, at=75.0)  # completed through the second fault: measured from its launch
    v = progress.check(r.h, bound_s=30.0)
    assert v.validity == "invalid" and len(v.offences) == 1
    assert "campaign 1 completed 50.0 s after the heal" in v.offences[0].reason
    assert v.figures["completion_s"][2] == pytest.approx(14.0)
