"""What ``tenir status`` adds from the alert nodes' cluster view, and what it says when no node
answers; the new commands' arguments."""

from __future__ import annotations

from typing import Any

import pytest

from cluster.cli import build_parser
from cluster.status import nodes_part
from cluster.status_render import render_nodes
from cluster.topology import Topology
from failover.drain import coordination_settings

pytestmark = pytest.mark.unit

VIEW: dict[str, Any] = {
    "node": "marseille-node1", "site": "marseille",
    "members": [{"name": "marseille-node1", "site": "marseille", "url": "http://x"},
                {"name": "marseille-node2", "site": "marseille", "url": "http://y"},
                {"name": "paris-node2", "site": "paris", "url": "http://z"}],
    "watchdog_leader": "marseille-node1", "drained_sites": ["paris"],
    "in_flight": {"12": {"marseille-node1": 3, "paris-node1": 1}, "3": {"marseille-node2": 2}},
    "errors": [],
}


def test_nodes_part_lists_inventory_nodes_with_membership_and_campaigns_by_site(
        lab_topology: Topology) -> None:
    part = nodes_part(lab_topology, VIEW)
    assert part["nodes"] == [
        {"name": "paris-node1", "site": "paris", "member": False},
        {"name": "paris-node2", "site": "paris", "member": True},
        {"name": "marseille-node1", "site": "marseille", "member": True},
        {"name": "marseille-node2", "site": "marseille", "member": True},
    ]
    assert part["watchdog_leader"] == "marseille-node1"
    assert part["drained_sites"] == ["paris"]
    assert part["campaigns"] == [
        {"id": 3, "in_flight": 2, "by_node": {"marseille-node2": 2},
         "by_site": {"marseille": 2}},
        {"id": 12, "in_flight": 4, "by_node": {"marseille-node1": 3, "paris-node1": 1},
         "by_site": {"marseille": 3, "paris": 1}},
    ]
    assert part["cluster_view"] == {"from": "marseille-node1", "reachable": True, "errors": []}
    text = "\n".join(render_nodes(part))
    assert "alert nodes (as seen by marseille-node1):" in text
    assert "paris-node1      paris      NOT A MEMBER  drained" in text
    assert "marseille-node1  marseille  member  watchdog leader" in text
    assert "drained sites: paris" in text
    assert "campaign 12: 4 batches in flight (marseille 3, paris 1)" in text


def test_nodes_part_when_no_node_answers_still_lists_the_inventory(
        lab_topology: Topology) -> None:
    part = nodes_part(lab_topology, None, "alert nodes unreachable: no alert node answered")
    assert [n["member"] for n in part["nodes"]] == [None] * 4
    assert (part["watchdog_leader"], part["drained_sites"], part["campaigns"]) == (None,) * 3
    assert part["cluster_view"]["reachable"] is False
    assert render_nodes(part) == ["alert nodes: UNREACHABLE (alert nodes unreachable: no alert "
                                  "node answered)"]


def test_nodes_part_of_a_node_that_cannot_read_everything(lab_topology: Topology) -> None:
    view = {**VIEW, "members": None, "in_flight": None,
            "errors": ["coordination service (members): no answer within 3 s"]}
    part = nodes_part(lab_topology, view)
    assert {n["member"] for n in part["nodes"]} == {None}
    assert part["campaigns"] is None
    text = "\n".join(render_nodes(part))
    assert "batches in flight: unknown" in text
    assert "! coordination service (members): no answer within 3 s" in text


def test_the_cli_reaches_the_coordination_service_the_nodes_use(lab_topology: Topology) -> None:
    s = coordination_settings(lab_topology)
    assert s.endpoints == ("10.213.0.11:2379", "10.213.0.21:2379", "10.213.0.31:2379")
    assert s.namespace == "/tenir/tenir-lab/"
    assert (s.ttl, s.retry_timeout) == (5.0, 1.5)


def test_new_commands_parse() -> None:
    parser = build_parser()
    a = parser.parse_args(["site", "drain", "paris", "--wait", "--timeout", "30"])
    assert (a.site_command, a.site, a.wait, a.timeout, a.json) == ("drain", "paris", True, 30.0,
                                                                   False)
    a = parser.parse_args(["site", "undrain", "paris", "--json"])
    assert (a.site_command, a.site, a.json) == ("undrain", "paris", True)
    a = parser.parse_args(["switchover", "--to", "marseille", "--timeout", "60", "--json"])
    assert (a.to, a.timeout, a.json) == ("marseille", 60.0, True)
    with pytest.raises(SystemExit):
        parser.parse_args(["switchover"])
