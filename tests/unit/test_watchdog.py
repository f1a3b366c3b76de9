"""The watchdog on fakes: one leader, a frozen snapshot per cycle, a sentence per cycle, dead
nodes' batches moved and recorded as events; the pure decision function on its own."""

from __future__ import annotations

import pytest

from cluster.coordination.base import MemberInfo
from failover.watchdog import Snapshot, Watchdog, decide
from replication.store_api import ChannelStep, ScenarioIn
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit


def test_decide_moves_only_work_of_nodes_that_are_not_members() -> None:
    snap = Snapshot(0.0, "a", {"a": "paris", "b": "marseille"},
                    {"a": 2, "c": 3, "d": 0, "e": 1})
    assert decide(snap).reassign == ("c", "e")
    assert decide(Snapshot(0.0, "a", {"a": "paris"}, {"a": 4})).reassign == ()


async def _lab() -> tuple[FakeCoordinationServer, MemoryStore, list[FakeCoordinator], int]:
    server = FakeCoordinationServer()
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("s", (ChannelStep("sms", {"fr": "x"}),)))
    campaign = await store.launch_campaign("s", "op", population=40, batch_size=10)
    coords = []
    for name, site in (("paris-node1", "paris"), ("marseille-node1", "marseille")):
        c = FakeCoordinator(server, name, ttl=6.0)
        await c.join(MemberInfo(name, site, name))
        coords.append(c)
    return server, store, coords, campaign


@pytest.mark.asyncio
async def test_one_leader_the_other_follows_and_nothing_to_move_while_all_live() -> None:
    _, store, (paris, marseille), _ = await _lab()
    await store.claim_batch("paris-node1", 30)
    w1 = Watchdog(paris, store, node="paris-node1", site="paris")
    w2 = Watchdog(marseille, store, node="marseille-node1", site="marseille")
    assert await w1.cycle() == ("paris-node1 leads: 2 members, 1 batches in flight, "
                                "nothing to move")
    assert await w2.cycle() == "marseille-node1: following watchdog leader paris-node1"
    assert store.events == []


@pytest.mark.asyncio
async def test_a_dead_node_loses_leadership_and_its_batches_move_with_an_event() -> None:
    server, store, (paris, marseille), _ = await _lab()
    await store.claim_batch("paris-node1", 30)
    await store.claim_batch("paris-node1", 30)
    w1 = Watchdog(paris, store, node="paris-node1", site="paris")
    w2 = Watchdog(marseille, store, node="marseille-node1", site="marseille")
    assert (await w1.cycle()).startswith("paris-node1 leads")
    # paris-node1 stops renewing (killed); marseille-node1 keeps renewing.
    server.advance(4.0)
    await marseille.renew()
    assert paris.may_act(safety=2.0) is False  # it would have self-fenced by now
    server.advance(3.0)  # paris-node1's lease expired: its member key and leadership are gone
    sentence = await w2.cycle()
    assert sentence == ("marseille-node1 leads: moved 2 batches of paris-node1 (no longer "
                        "members) back to the queue for the 1 live members")
    assert await store.batches_in_flight() == {}
    [event] = store.events
    assert event.kind == "watchdog.move" and event.sentence == sentence
    assert event.details["moved"] == {"paris-node1": 2}
    # the next cycle has nothing left to do
    assert (await w2.cycle()).endswith("nothing to move")


@pytest.mark.asyncio
async def test_unreachable_coordination_means_not_acting() -> None:
    server, store, (paris, _), _ = await _lab()
    server.reachable = False
    w1 = Watchdog(paris, store, node="paris-node1", site="paris")
    assert "cannot reach the coordination service" in await w1.cycle()
    assert store.events == []
