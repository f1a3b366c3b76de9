"""chaos.firewall's iptables rules on real namespaces of our own (tdly-*, a chain of the test's
own name): a silenced host neither sends nor receives but still reaches itself, a dropped peer is
cut both ways while the others are not, and clearing gives everything back. Needs root."""

from __future__ import annotations

import subprocess

import pytest

from chaos.firewall import Iptables
from chaos.scratch_net import Triangle

pytestmark = pytest.mark.integration
FW = Iptables(chain="TDLY_CHAOS")


def reaches(net: Triangle, src: str, address: str) -> bool:
    done = subprocess.run(["ip", "netns", "exec", net.namespaces[src], "ping", "-n", "-q",
                           "-c", "2", "-i", "0.05", "-W", "1", address],
                          capture_output=True, text=True, timeout=30, check=False)
    return done.returncode == 0


def test_a_silenced_host_is_cut_both_ways_but_reaches_itself(net: Triangle) -> None:
    a = net.namespaces["a"]
    own = net.addr[("a", "b")]
    FW.silence(a, own, ["10.251.0.0/16"])
    try:
        assert FW.holds_rules(a)
        assert not reaches(net, "a", net.addr[("b", "a")])
        assert not reaches(net, "b", net.addr[("a", "b")])
        assert not reaches(net, "c", net.addr[("a", "c")])
        assert reaches(net, "a", own)  # its own traffic to itself goes on
        assert reaches(net, "b", net.addr[("c", "b")])  # the others are untouched
    finally:
        FW.clear(a)
    assert not FW.holds_rules(a)
    assert reaches(net, "b", net.addr[("a", "b")]) and reaches(net, "a", net.addr[("c", "a")])


def test_dropped_peers_are_cut_both_ways_and_only_they(net: Triangle) -> None:
    b = net.namespaces["b"]
    FW.drop_peers(b, list(net.addresses_of("a")))
    try:
        assert not reaches(net, "b", net.addr[("a", "b")])
        assert not reaches(net, "a", net.addr[("b", "a")])
        assert reaches(net, "b", net.addr[("c", "b")])
        FW.drop_peers(b, list(net.addresses_of("a")))  # twice: hooked once, still cut
        assert not reaches(net, "a", net.addr[("b", "a")])
    finally:
        FW.clear(b)
        FW.clear(b)  # idempotent
    assert reaches(net, "a", net.addr[("b", "a")])
