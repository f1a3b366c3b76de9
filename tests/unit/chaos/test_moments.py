"""The moments' thresholds: final outcomes a campaign must have before the fault."""

from __future__ import annotations

import pytest

from chaos.moments import threshold
from chaos.scenario import MOMENTS


def test_each_moment_comes_at_its_share_of_the_campaign() -> None:
    got = {m: threshold(m, 120_000) for m in MOMENTS}
    assert got == {"start": 1, "early": 12_000, "middle": 60_000, "end": 108_000,
                   "during-pg-failover": 60_000}
    assert threshold("early", 5) == 1  # at least one final outcome, whatever the size


def test_an_unknown_moment_is_named() -> None:
    with pytest.raises(ValueError, match="not 'late'"):
        threshold("late", 10)
