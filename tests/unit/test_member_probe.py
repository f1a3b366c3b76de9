"""What the ZooKeeper probe makes of ``srvr`` answers, and the quorum rule shared by both
backends."""

from __future__ import annotations

import pytest

from cluster.member_probe import MemberHealth, has_quorum
from cluster.zookeeper_probe import parse_srvr

pytestmark = pytest.mark.unit

SRVR = ("Zookeeper version: 3.8.0-debian, built on 2022-07-11\nLatency min/avg/max: 0/0.5/7\n"
        "Received: 120\nSent: 119\nConnections: 4\nOutstanding: 0\nZxid: 0x100000042\n"
        "Mode: {mode}\nNode count: 31\n")


@pytest.mark.parametrize(("mode", "serving"), [("leader", True), ("follower", True),
                                               ("standalone", True), ("observer", False)])
def test_mode_decides_whether_a_member_serves(mode: str, serving: bool) -> None:
    ok, seen, problem = parse_srvr(SRVR.format(mode=mode))
    assert (ok, seen) == (serving, mode)
    assert (problem is None) == serving


def test_a_member_without_quorum_does_not_serve() -> None:
    ok, mode, problem = parse_srvr("This ZooKeeper instance is not currently serving requests\n")
    assert (ok, mode) == (False, None)
    assert problem == "not serving requests (no quorum)"


def test_a_member_that_refuses_srvr_says_to_whitelist_it() -> None:
    ok, _, problem = parse_srvr("srvr is not executed because it is not in the whitelist.\n")
    assert not ok and problem is not None and "4lw.commands.whitelist" in problem


def test_garbage_is_not_health() -> None:
    ok, _, problem = parse_srvr("HTTP/1.1 400 Bad Request\r\n")
    assert not ok and problem is not None and "unexpected answer" in problem


@pytest.mark.parametrize(("healthy", "quorum"), [((True, True, True), True),
                                                 ((True, True, False), True),
                                                 ((True, False, False), False)])
def test_quorum_is_a_strict_majority(healthy: tuple[bool, ...], quorum: bool) -> None:
    members = [MemberHealth(f"m{i}", "10.0.0.1", h, False, None) for i, h in enumerate(healthy)]
    assert has_quorum(members) is quorum
