"""The node-kill and site-loss faults of the chaos matrix on the ZooKeeper lab, mid-campaign,
judged by the checkers: every verdict valid (the etcd lab runs every fault:
``test_chaos_matrix.py``).

It runs after ``test_zookeeper_lab.py`` (file order) and brings its own ZooKeeper lab (it reuses
one that is already up), taken down at the end, so the lab changes backend once in the session.
Expected duration: about 3 min to bring the ZooKeeper lab up (none is running: the ZooKeeper
module took its own down), 1 min for the node kill, 1.5 min for the site's power cut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from cluster.lab.lab import Lab, lab_coordination
from cluster.lab.layout import Layout, lab_dir
from cluster.topology import load_topology, with_coordination
from tests.lab.chaos_kit import assert_all_valid, ci_variant, run
from tests.lab.support import INVENTORY

pytestmark = [pytest.mark.lab, pytest.mark.chaos]


@pytest.fixture(scope="module")
def zk_chaos_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    try:  # the session's reporter when the lab conftest has one (``live``), else print
        say: Callable[[str], None] = request.getfixturevalue("live")
    except pytest.FixtureLookupError:
        say = print
    topo = with_coordination(load_topology(INVENTORY), "zookeeper")
    lab = Lab(topo, Layout(lab_dir()), say=say)
    if lab_coordination(topo) not in (None, "zookeeper"):
        lab.down()
    lab.up(timeout=900)
    yield lab
    lab.down()


@pytest.mark.parametrize("name", ["node-kill", "site-power-cut"])
def test_node_kill_and_site_loss_mid_campaign_on_zookeeper(zk_chaos_lab: Lab,
                                                           name: str) -> None:
    scenario = ci_variant(name)
    assert "zookeeper" in scenario.backends
    record, _ = run(zk_chaos_lab, scenario)
    assert record.backend == "zookeeper"
    assert_all_valid(record, scenario)
