"""The longest pause in the survivors' submissions after a fault: the gap a person waiting for
an alert feels, not only the first submission (which a batch under way makes immediate)."""

from __future__ import annotations

import pytest

from chaos.resume import Pause, longest_pause

pytestmark = pytest.mark.unit


def test_a_batch_under_way_then_a_stop_is_a_pause_not_an_instant_resume() -> None:
    # sending goes on 1.5 s after the fault (batches under way), stops, resumes at 21 s
    times = [100.1, 100.5, 101.5, 121.0, 121.2]
    assert longest_pause(times, 100.0, 130.0) == Pause(19.5, 21.0)


def test_no_submission_at_all_is_the_whole_window_and_sending_never_resumed() -> None:
    assert longest_pause([], 100.0, 110.0) == Pause(10.0, 10.0)
    assert longest_pause([99.0, 111.0], 100.0, 110.0) == Pause(10.0, 10.0)


def test_steady_sending_has_only_short_gaps() -> None:
    times = [100.0 + 0.2 * i for i in range(1, 100)]
    pause = longest_pause(times, 100.0, 120.0)
    assert pause.seconds == pytest.approx(0.2, abs=1e-9)


def test_a_write_the_doomed_primary_commits_while_the_site_is_being_killed_is_no_resume() -> None:
    from chaos.history import History
    from chaos.resume import resume

    h = History()
    cut = {"name": "site_power_cut", "site": "paris"}
    h.add("nemesis", "invoke", "fault", cut, at=100.0)
    h.add("node:marseille-node1", "ok", "claim", {"kind": "write", "site": "marseille"}, at=100.02)
    h.add("nemesis", "ok", "fault", cut, at=100.8)  # every machine of paris killed
    h.add("carrier:marseille", "ok", "submit", {"site": "marseille"}, at=100.1)
    h.add("node:marseille-node1", "ok", "claim", {"kind": "write", "site": "marseille"}, at=118.5)
    r = resume(h, ["paris", "marseille"])
    assert r is not None and r.sites == ("marseille",)
    assert r.submit_s == pytest.approx(0.1) and r.outcome_s == pytest.approx(18.5)
