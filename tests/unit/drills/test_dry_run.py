"""A dry run goes through the same path as a real one (checks read the cluster, chaostoolkit
runs the experiment) and changes nothing: the fake cluster's whole state is the same after, it
logged no change, no run was started, no record written, and every step said what it would do."""

from __future__ import annotations

import pytest

from failover.drills import runner
from failover.drills.catalog import load_all
from failover.drills.snapshot import diff
from tests.fakes.drill_cluster import FakeCluster
from tests.unit.drills.support import context, small

pytestmark = pytest.mark.unit

KINDS = [d.kind for d in load_all()]


@pytest.mark.parametrize("kind", KINDS)
def test_a_dry_run_changes_nothing(kind: str) -> None:
    cluster = FakeCluster()
    drill = small(kind)
    said: list[str] = []
    before = cluster.snapshot()
    result = runner.run(context(cluster, drill, said), drill, dry=True)
    after = cluster.snapshot()
    assert diff(before, after) == []
    assert cluster.log == []
    assert (cluster.started_runs, cluster.records) == ([], {})
    assert result.outcome == "dry-run" and result.exit_code == 0
    would = [line for line in said if line.startswith("  dry run: would")]
    # every method step and rollback that acts or waits says what it would do
    acting = [a for a in drill.activities("method") + drill.activities("rollbacks")]
    assert len(would) == len(acting), said
    assert any("would launch a test campaign to 600 generated test recipients" in w
               for w in would)
    assert all(line.startswith("ok ") for line in said[:5]), said[:5]


def test_a_dry_run_says_a_real_run_would_be_refused_and_why() -> None:
    cluster = FakeCluster()
    cluster.drained.add("marseille")
    cluster.lag = 4096
    said: list[str] = []
    drill = small("lose-primary-site")
    result = runner.run(context(cluster, drill, said), drill, dry=True)
    assert result.outcome == "refused" and result.exit_code == 1
    assert result.reason is not None
    assert "site marseille is drained" in result.reason
    assert "lags 4,096 bytes" in result.reason
    assert cluster.log == []


def test_the_snapshot_diff_names_what_changed() -> None:
    """The comparison itself can fail: a fault's change is named."""
    cluster = FakeCluster()
    before = cluster.snapshot()
    cluster.power_cut("paris").inject()
    changes = diff(before, cluster.snapshot())
    assert "up.paris: true -> false" in changes
    assert any(c.startswith("primary:") for c in changes)
