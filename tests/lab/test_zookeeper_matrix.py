"""The node-kill and site-loss faults of the chaos matrix on the ZooKeeper lab, mid-campaign,
judged by the checkers: every verdict valid (the etcd lab runs every fault:
``test_chaos_matrix.py``).

It shares the ZooKeeper lab of ``test_zookeeper_lab.py`` (fixture ``zk_lab`` in ``conftest.py``),
so the lab changes backend once in the session. Expected duration: 1 min for the node kill,
1.5 min for the site's power cut (plus about 2.5 min to bring the ZooKeeper lab up when this
module runs alone).
"""

from __future__ import annotations

import pytest

from tests.lab.chaos_kit import assert_all_valid, ci_variant, run
from tests.lab.support import LabHandle

pytestmark = [pytest.mark.lab, pytest.mark.chaos]


@pytest.mark.parametrize("name", ["node-kill", "site-power-cut"])
def test_node_kill_and_site_loss_mid_campaign_on_zookeeper(zk_lab: LabHandle,
                                                           name: str) -> None:
    scenario = ci_variant(name)
    assert "zookeeper" in scenario.backends
    record, _ = run(zk_lab.lab, scenario)
    assert record.backend == "zookeeper"
    assert_all_valid(record, scenario)
