"""Issue 14 on the lab: the site holding the PostgreSQL primary is lost mid-campaign (a power cut
of its machines, at once) and the surviving site's nodes do not pause while Patroni promotes
the standby (about 20 s: its ttl). They send what they hold and their reserve claimed ahead,
their outcomes waiting in their journals, and flush them when the new primary answers.

The fault comes early (10 %) in a 60,000-recipient campaign, when every node's reserve is full
and most of the work is still to send. Judged on the recorded history (``chaos/``): every
checker of the scenario valid (recipients, rpo, duplicates, fencing, watchdog, progress), and
from the surviving site's carrier (its simulator's submission log) the first submission after
the fault and the longest pause in its submissions both within 5 s. On ZooKeeper the pause is
measured by ``make bench-resume``; the double fault's checkers are judged by
``test_chaos_matrix.py``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from chaos.resume import longest_pause
from tests.lab.chaos_kit import assert_all_valid, ci_variant, run
from tests.lab.support import LabHandle

pytestmark = [pytest.mark.lab, pytest.mark.chaos]
POPULATION = 60_000  # about 40 s of sending on the lab (400/s per node and adapter)
RESUME_BOUND_S = 5.0  # issue 14: submissions resume within 5 s (the moonshot: no pause)


def test_the_surviving_site_keeps_sending_when_the_primarys_site_is_lost(
        lab_env: LabHandle) -> None:
    base = ci_variant("site-power-cut")
    cut = replace(base.faults[0], params={**base.faults[0].params, "site": "primary",
                                          "silence_s": 0})
    # Early (10 %) in a campaign big enough that each node's reserve (25 s at its rate) is
    # full and most of the work is still to send: with 10,000 recipients the survivors had
    # sent their whole share 4 s after the fault and waited 14 s for the rest, which only the
    # store (claims, the watchdog's moves) can give them.
    scenario = replace(base, faults=(cut,), population=POPULATION,
                       moments=(*base.moments, "early")).at("early")
    record, history = run(lab_env.lab, scenario)
    assert_all_valid(record, scenario)
    assert record.resume is not None and record.resume.submit_s is not None, record.resume
    assert record.resume.submit_s <= RESUME_BOUND_S, record.resume
    fault_at = min(op.at for op in history.of("fault", "invoke"))
    times = [op.at for op in history.of("submit", "ok")
             if op.value.get("site") in record.resume.sites and op.at > fault_at]
    assert times, "the surviving site's carrier received nothing after the fault"
    pause = longest_pause(times, fault_at, max(times))
    print(f"primary's site lost: first submission {record.resume.submit_s:.2f} s after the "
          f"fault, longest pause {pause.seconds:.2f} s (ended {pause.ended_s:.2f} s after it), "
          f"first outcome recorded {record.resume.outcome_s} s")
    assert pause.seconds <= RESUME_BOUND_S, pause
