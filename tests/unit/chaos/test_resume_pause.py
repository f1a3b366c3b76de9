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
