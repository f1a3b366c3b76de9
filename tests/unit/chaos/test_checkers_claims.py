"""The duplicates, fencing and watchdog checkers on synthetic histories: valid and invalid."""

from __future__ import annotations

import pytest

from chaos.checkers import duplicates, fencing, watchdog
from chaos.history import History
from tests.unit.chaos.builder import Run

pytestmark = pytest.mark.unit


def _node_killed_holding_batch_2() -> Run:
    """Batch 1 (recipients 1, 2) done by node1; batch 2 (recipients 3, 4) held by node2 when
    it is killed at t=10, recipient 3 already final; node3 takes batch 2 over at t=14."""
    r = Run()
    r.launch(1, 4)
    r.claim(1, 1, "paris-node1", at=0.5)
    r.claim(2, 1, "paris-node2", at=0.6)
    for rid in (1, 2):
        r.submit("paris", f"1:{rid}:sms:0", at=1 + rid)
        r.outcome(1, rid, at=1.1 + rid, batch=1, node="paris-node1")
    r.submit("paris", "1:3:sms:0", at=4)
    r.outcome(1, 3, at=4.1, batch=2, node="paris-node2")
    r.submit("paris", "1:4:sms:0", at=9.0)  # sent, outcome never recorded: in flight
    r.fault(at=10.0, nodes=["paris-node2"])
    r.claim(2, 1, "paris-node2", at=14.0, kind="move", site="paris")
    r.claim(2, 2, "marseille-node1", at=14.2, site="marseille")
    r.outcome(1, 4, at=15.0, batch=2, epoch=2, node="marseille-node1")
    return r


def test_duplicates_counted_and_within_what_was_in_flight() -> None:
    r = _node_killed_holding_batch_2()
    r.submit("marseille", "1:4:sms:0", at=14.5)  # resent by the other site: a person gets two
    r.final(1, 4)
    v = duplicates.check(r.h)
    assert v.validity == "valid", v
    assert (v.figures["duplicates"], v.figures["cross_site"], v.figures["bound"]) == (1, 1, 1)


def test_duplicates_invalid_beyond_the_bound_or_outside_what_was_in_flight() -> None:
    r = _node_killed_holding_batch_2()
    r.submit("marseille", "1:4:sms:0", at=14.5)
    r.submit("marseille", "1:4:sms:0", at=14.6)  # twice more: 2 > bound 1
    r.final(1, 4)
    v = duplicates.check(r.h)
    assert v.validity == "invalid" and "exceed the bound 1" in v.offences[0].reason
    r2 = _node_killed_holding_batch_2()
    twice = r2.submit("paris", "1:1:sms:0", at=20.0, resubmission=True)  # batch 1 was done
    r2.final(1, 4)
    v2 = duplicates.check(r2.h)
    assert v2.validity == "invalid"
    assert "1:1:sms:0 submitted 2 times" in v2.offences[-1].reason
    assert twice.index in v2.offences[-1].ops


def test_duplicates_without_a_fault_have_a_zero_bound_and_a_gap_is_unknown() -> None:
    r = Run()
    r.launch(1, 1)
    r.submit("paris", "1:1:sms:0", at=1)
    r.submit("paris", "1:1:sms:0", at=2, resubmission=True)
    v = duplicates.check(r.h)
    assert v.validity == "invalid" and v.figures["same_site"] == 1
    ok = Run()
    ok.submit("paris", "1:1:sms:0", at=1)
    ok.h.add("collector", "info", "gap", {"source": "carrier:paris", "lost": 5})
    assert duplicates.check(ok.h).validity == "unknown"


def test_fencing_valid_with_refusals_counted() -> None:
    r = Run()
    r.claim(1, 1, "paris-node1", at=0)
    r.claim(1, 1, "paris-node1", at=1, kind="write", current_epoch=1, rows=10)
    r.claim(1, 2, "marseille-node1", at=5)
    r.h.add("node:paris-node1", "ok", "stale_write", {
        "batch": 1, "epoch": 1, "node": "paris-node1", "operation": "record_outcomes",
        "current_epoch": 2, "current_owner": "marseille-node1", "rows": 10})
    r.claim(1, 2, "marseille-node1", at=6, kind="write", current_epoch=2, rows=10)
    v = fencing.check(r.h, expect_refusals=True)
    assert v.validity == "valid", v
    assert (v.figures["refused"], v.figures["accepted_writes"]) == (1, 2)


def test_fencing_invalid_when_a_superseded_epoch_writes() -> None:
    r = Run()
    r.claim(1, 1, "paris-node1", at=0)
    newer = r.claim(1, 2, "marseille-node1", at=5)
    stale = r.claim(1, 1, "paris-node1", at=6, kind="write", current_epoch=2, rows=10)
    v = fencing.check(r.h)
    assert v.validity == "invalid"
    assert v.offences[0].ops == (stale.index, newer.index)
    # Without the current epoch in the log entry, the claim log alone tells it.
    r2 = Run()
    r2.claim(1, 1, "paris-node1", at=0)
    r2.claim(1, 2, "marseille-node1", at=5)
    r2.claim(1, 1, "paris-node1", at=6, kind="write", rows=10)
    assert fencing.check(r2.h).validity == "invalid"


def test_fencing_unknown_when_a_zombie_was_expected_but_nothing_was_refused() -> None:
    r = Run()
    r.claim(1, 1, "paris-node1", at=0)
    assert fencing.check(r.h, expect_refusals=True).validity == "unknown"
    assert fencing.check(History()).validity == "valid"


def test_watchdog_valid_when_the_move_beats_the_lease() -> None:
    r = _node_killed_holding_batch_2()
    v = watchdog.check(r.h)
    assert v.validity == "valid", v
    assert v.figures["max_takeover_s"] == pytest.approx(4.0)


def test_watchdog_invalid_when_only_lease_expiry_moved_the_work() -> None:
    r = Run()
    r.launch(1, 2)
    held = r.claim(2, 1, "paris-node2", at=0.0, lease_s=20.0)
    r.claim(2, 1, "paris-node2", at=8.0, kind="renew", lease_s=20.0)  # deadline t=28
    fault = r.fault(at=10.0, site="paris")
    late = r.claim(2, 2, "marseille-node1", at=28.5, site="marseille")
    v = watchdog.check(r.h)
    assert v.validity == "invalid"
    assert "lease expiry" in v.offences[0].reason
    assert v.offences[0].ops[0] == fault.index and late.index in v.offences[0].ops
    assert held.index not in v.offences[0].ops  # the renewal is the holder's latest word
    r2 = Run()
    r2.claim(2, 1, "paris-node2", at=0.0)
    r2.fault(at=1.0, nodes=["paris-node2"])
    v2 = watchdog.check(r2.h)
    assert v2.validity == "invalid" and "never taken over" in v2.offences[0].reason


def test_watchdog_unknown_when_the_dead_node_held_nothing() -> None:
    r = Run()
    r.claim(1, 1, "paris-node1", at=0)
    r.claim(1, 1, "paris-node1", at=1, kind="finish")
    r.fault(at=2.0, nodes=["paris-node1"])
    assert watchdog.check(r.h).validity == "unknown"


def test_watchdog_needs_no_takeover_of_a_batch_its_holder_finished_as_the_fault_began() -> None:
    """Measured on the lab: a node finished a batch 43 ms after a power cut's silence began
    (its last writes were already on the wire). Finished by its holder, it needed no move."""
    r = Run()
    r.claim(2, 1, "paris-node2", at=0.0)
    r.fault(at=10.0, site="paris")
    r.claim(2, 1, "paris-node2", at=10.04, kind="finish")
    assert watchdog.check(r.h).validity == "valid"  # nothing was left to take over
    # ...but a batch finished by someone else at its old epoch is still an offence
    r2 = Run()
    r2.claim(2, 1, "paris-node2", at=0.0)
    r2.fault(at=10.0, site="paris")
    r2.claim(2, 1, "marseille-node1", at=10.04, kind="finish")
    v2 = watchdog.check(r2.h)
    assert v2.validity == "invalid" and "never taken over" in v2.offences[0].reason


def test_duplicates_bound_counts_what_a_cut_off_node_claimed_until_the_heal() -> None:
    """An isolated site's node claims on until it fences itself: what it claimed after the
    fault, before the heal, may be sent again too; what it claims after the heal may not."""
    r = Run()
    r.launch(1, 4)
    r.claim(1, 1, "paris-node1", at=0.5)
    r.fault(at=10.0, site="paris")
    r.claim(2, 1, "paris-node1", at=11.0)  # after the cut, before fencing
    r.submit("paris", "1:3:sms:0", at=11.5)
    r.outcome(1, 3, at=11.6, batch=2, node="paris-node1", final=False)
    r.claim(2, 2, "marseille-node1", at=15.0, site="marseille")
    r.submit("marseille", "1:3:sms:0", at=15.5)
    r.heal(at=20.0)
    r.final(1, 4)
    v = duplicates.check(r.h)
    assert v.validity == "valid", v
    assert v.figures["duplicates"] == 1
    r2 = Run()
    r2.launch(1, 4)
    r2.claim(1, 1, "paris-node1", at=0.5)
    r2.fault(at=10.0, site="paris")
    r2.heal(at=20.0)
    r2.claim(2, 1, "paris-node1", at=21.0)  # after the heal: not in flight at the fault
    r2.outcome(1, 3, at=21.6, batch=2, node="paris-node1", final=False)
    r2.submit("paris", "1:3:sms:0", at=21.5)
    r2.submit("marseille", "1:3:sms:0", at=25.5)
    r2.final(1, 4)
    assert duplicates.check(r2.h).validity == "invalid"
