"""A node that loses the store while it keeps its coordination membership: cut (stop sending,
say so, let the watchdog move its work) when others show they reach the store, unreachable
(keep sending, as through a PostgreSQL failover) when nobody does. Hand-moved clock, fake
coordination service, scripted probes."""

from __future__ import annotations

import pytest

from cluster.coordination.base import CoordinationUnavailable, MemberInfo
from nodes.member_publish import Publication
from nodes.store_health import CUT, OK, UNREACHABLE, AllGates, Peers, StoreHealth, judge
from tests.fakes.clock import Monotonic
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class Probe:
    def __init__(self) -> None:
        self.answers = True

    async def probe(self) -> None:
        if not self.answers:
            raise TimeoutError("no answer")

    async def close(self) -> None:
        return None


class Node:
    def __init__(self, server: FakeCoordinationServer, name: str, clock: Monotonic) -> None:
        self.coordinator = FakeCoordinator(server, name, ttl=5.0)
        self.probe = Probe()
        self.publication = Publication(self.coordinator, MemberInfo(name, name.split("-")[0],
                                                                    "h", ("sms",)))
        self.health = StoreHealth(self.probe, self.coordinator, self.publication, node=name,
                                  site=name.split("-")[0], grace_s=3.0, probe_s=0.5,
                                  heartbeat_s=1.0, clock=clock)

    async def step(self) -> str:
        await self.health.probe_once()
        return await self.health.decide_once()


async def _cluster(names: tuple[str, ...]) -> tuple[Monotonic, list[Node]]:
    server = FakeCoordinationServer()
    clock = Monotonic(100.0)
    nodes = [Node(server, n, clock) for n in names]
    for n in nodes:
        await n.coordinator.join(n.publication.current)
    return clock, nodes


async def _run(clock: Monotonic, nodes: list[Node], seconds: float) -> list[list[str]]:
    """Every node probes and decides every 0.5 s; the states at each step."""
    seen = []
    for _ in range(round(seconds / 0.5)):
        clock.now += 0.5
        seen.append([await n.step() for n in nodes])
    return seen


async def test_judge_is_pure() -> None:
    assert judge(2.9, 3.0, True) == OK
    assert judge(3.0, 3.0, False) == UNREACHABLE
    assert judge(3.0, 3.0, True) == CUT


async def test_a_node_cut_from_the_store_while_others_reach_it_stops_and_says_so() -> None:
    clock, nodes = await _cluster(("paris-node1", "marseille-node1"))
    await _run(clock, nodes, 3.0)  # heartbeats flow both ways
    paris, marseille = nodes
    paris.probe.answers = False
    cut_at = clock.now
    states = await _run(clock, nodes, 6.0)
    first_cut = next(i for i, s in enumerate(states) if s[0] == CUT)
    took = (first_cut + 1) * 0.5
    assert 3.0 <= took <= 4.5, states  # grace 3 s, then a heartbeat fresher than the margin
    assert all(s[0] == OK for s in states[:4])  # still sending during the grace
    assert not paris.health.may_dispatch() and marseille.health.may_dispatch()
    published = {m.name: m for m in await marseille.coordinator.members()}
    assert published["paris-node1"].store == CUT
    assert published["paris-node1"].carriers == ("sms",)  # the other fields are kept
    assert paris.health.reaching == ["marseille-node1"]
    assert clock.now - cut_at >= 3.0
    paris.probe.answers = True  # the link is back
    assert await paris.step() == OK and paris.health.may_dispatch()
    published = {m.name: m for m in await marseille.coordinator.members()}
    assert published["paris-node1"].store == OK


async def test_nobody_reaching_the_store_is_a_failover_and_everybody_keeps_sending() -> None:
    clock, nodes = await _cluster(("paris-node1", "paris-node2", "marseille-node1"))
    await _run(clock, nodes, 3.0)
    for n in nodes:
        n.probe.answers = False
    states = await _run(clock, nodes, 20.0)
    assert all(s != CUT for step in states for s in step), states
    assert states[-1] == [UNREACHABLE] * 3
    assert all(n.health.may_dispatch() for n in nodes)
    published = {m.name: m.store for m in await nodes[0].coordinator.members()}
    assert published == dict.fromkeys(("paris-node1", "paris-node2", "marseille-node1"),
                                       UNREACHABLE)


async def test_a_heartbeat_seen_late_from_before_the_failure_does_not_cut() -> None:
    clock, nodes = await _cluster(("paris-node1", "marseille-node1"))
    await _run(clock, nodes, 2.0)
    paris, marseille = nodes
    # marseille answered once more just before PostgreSQL died, and published it: paris, which
    # lost the store at the same moment, reads that heartbeat only now, after its last answer
    paris.probe.answers = False
    marseille.probe.answers = False
    clock.now += 0.4
    marseille.health.last_ok = clock.now
    marseille.health.seq += 1
    marseille.health._published_at = -1e9
    await marseille.health.decide_once()
    states = await _run(clock, nodes, 10.0)
    assert all(s[0] != CUT for s in states), states


async def test_heartbeats_read_late_because_member_reads_failed_do_not_cut() -> None:
    """Seen on the lab (test_pg_outage, CI-sized): the primary's site died with the etcd member
    marseille-node1 read from. Its member reads failed for 3 s while it switched endpoints;
    the first one to answer showed the heartbeats the others had published just before the
    store went away. It judged itself cut and its batches moved: their messages in flight were
    sent twice. A heartbeat read late was not made late: it is dated by the read before."""
    clock, nodes = await _cluster(("marseille-node1", "marseille-node2", "paris-node1"))
    await _run(clock, nodes, 2.0)
    me, *others = nodes
    for n in nodes:
        n.probe.answers = False
    members = me.coordinator.members

    async def endpoint_gone() -> list[MemberInfo]:
        raise CoordinationUnavailable("etcd: no answer within 1.5s")

    me.coordinator.members = endpoint_gone  # type: ignore[method-assign]
    clock.now += 0.4
    for other in others:  # their last answer, published as the store went away
        other.health.last_ok = clock.now
        other.health.seq += 1
        other.health._published_at = -1e9
        await other.health.decide_once()
    states = await _run(clock, [me], 3.5)
    me.coordinator.members = members  # type: ignore[method-assign]
    states += await _run(clock, nodes, 6.0)
    assert all(s[0] != CUT for s in states), states
    assert me.health.state == UNREACHABLE and me.health.may_dispatch()


async def test_the_first_sight_of_a_peer_is_no_proof_and_gone_peers_are_forgotten() -> None:
    peers = Peers("paris-node1")
    ok = MemberInfo("marseille-node1", "marseille", "h", store="ok", store_seq=7)
    peers.update([ok], now=10.0)
    assert peers.reaching_since(0.0) == []
    peers.update([MemberInfo("marseille-node1", "marseille", "h", store_seq=8)], now=11.0)
    # made after the read at 10.0 (not before it): dated 10.0, however late this read came
    assert peers.reaching_since(10.5) == []
    assert peers.reaching_since(9.5) == ["marseille-node1"]
    peers.update([MemberInfo("marseille-node1", "marseille", "h", store="unreachable",
                             store_seq=9)], now=12.0)
    assert peers.reaching_since(11.5) == []  # unreachable is no answer
    peers.update([], now=13.0)
    assert peers.seen == {}


async def test_all_gates_must_be_open() -> None:
    class Gate:
        def __init__(self, open_: bool) -> None:
            self.open_ = open_

        def may_dispatch(self) -> bool:
            return self.open_

    assert AllGates(Gate(True), Gate(True)).may_dispatch()
    assert not AllGates(Gate(True), Gate(False)).may_dispatch()


async def test_a_probe_period_longer_than_the_grace_is_refused() -> None:
    server = FakeCoordinationServer()
    coordinator = FakeCoordinator(server, "n")
    with pytest.raises(ValueError, match="probe_s"):
        StoreHealth(Probe(), coordinator, Publication(coordinator, MemberInfo("n", "s", "h")),
                    node="n", site="s", grace_s=1.0, probe_s=1.0)


async def test_at_the_end_of_a_failover_a_peers_first_heartbeat_does_not_cut_a_node() -> None:
    clock, nodes = await _cluster(("paris-node1", "marseille-node1"))
    await _run(clock, nodes, 3.0)
    paris, marseille = nodes
    for n in nodes:
        n.probe.answers = False  # PostgreSQL fails over: nobody reaches it for 20 s
    await _run(clock, nodes, 20.0)
    for n in nodes:
        n.probe.answers = True  # a primary answers again
    clock.now += 0.5
    assert await marseille.step() == OK  # marseille probes first and publishes its heartbeat
    clock.now += 0.3
    # paris reads it before its own next probe: it asks once more and stays ok, sending
    assert await paris.health.decide_once() == OK
    assert paris.health.may_dispatch()
    published = {m.name: m.store for m in await marseille.coordinator.members()}
    assert published["paris-node1"] == OK
