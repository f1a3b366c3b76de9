"""The watchdog and a site cut from the store but not from the coordination service (the
inter-datacenter link cut, both sites reaching the witness): the members that say ``cut`` lose
their batches at once, not at their lease's expiry; a leader that is cut gives up the lead."""

from __future__ import annotations

import pytest

from cluster.coordination.base import MemberInfo
from failover.pg_state import PgState
from failover.snapshot import Snapshot
from failover.watchdog import ELECTION, HOLD_S, Watchdog, decide
from replication.store_api import ChannelStep, ScenarioIn
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit
NO_PRIMARY = PgState(answered_by="http://10.213.0.21:8008", members=("marseille-db",))
MEMBERS = {"paris-node1": "paris", "paris-node2": "paris", "marseille-node1": "marseille"}


def _snap(cut: set[str], **kw: object) -> Snapshot:
    return Snapshot(0.0, "marseille-node1", MEMBERS, {"paris-node1": 3, "paris-node2": 2,
                                                      "marseille-node1": 4},
                    sites={"paris": 2, "marseille": 1}, store_cut=frozenset(cut),
                    **kw)  # type: ignore[arg-type]


def test_decide_moves_the_work_of_members_cut_from_the_store_and_says_why() -> None:
    decision = decide(_snap({"paris-node1", "paris-node2"}))
    assert decision.reassign == ("paris-node1", "paris-node2")
    assert decision.cut == ("paris-node1", "paris-node2")
    assert decision.why() == "cut from PostgreSQL while other nodes reach it"
    # the whole site is cut: holding the batches for it would only delay them
    assert decision.reserve == {} and decision.hold_s == 0.0
    assert decide(_snap(set())).reassign == ()  # members that reach the store keep their work


def test_decide_holds_a_cut_nodes_work_for_its_site_only_if_a_node_there_reaches_the_store(
        ) -> None:
    decision = decide(_snap({"paris-node1"}))
    assert decision.reassign == ("paris-node1",)
    assert (decision.reserve, decision.hold_s) == ({"paris-node1": "paris"}, HOLD_S)
    # a hold for paris ends once no node of paris can take the batches
    assert decide(_snap({"paris-node1", "paris-node2"}), holding=("paris",)).lift == ("paris",)
    assert decide(_snap({"paris-node1"}), holding=("paris",)).lift == ()


def test_decide_names_the_dead_and_the_cut_apart_and_waits_without_a_primary() -> None:
    snap = Snapshot(0.0, "marseille-node1", {"paris-node2": "paris",
                                             "marseille-node1": "marseille"},
                    {"paris-node1": 1, "paris-node2": 2}, sites={"paris": 1, "marseille": 1},
                    store_cut=frozenset({"paris-node2"}))
    assert decide(snap).why() == ("paris-node1 no longer members; paris-node2 cut from "
                                  "PostgreSQL while other nodes reach it")
    waiting = decide(_snap({"paris-node1"}, postgres=NO_PRIMARY))
    assert (waiting.wait, waiting.reassign, waiting.cut) == (("paris-node1",), (),
                                                              ("paris-node1",))


class Cut:
    def __init__(self) -> None:
        self.is_cut = False

    def cut(self) -> bool:
        return self.is_cut


@pytest.mark.asyncio
async def test_a_cut_leader_steps_down_and_the_other_side_moves_the_cut_sites_work() -> None:
    server = FakeCoordinationServer()
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("s", (ChannelStep("sms", {"fr": "x"}),)))
    await store.launch_campaign("s", "op", population=40, batch_size=10)
    coords, states, dogs = {}, {}, {}
    for name, site in (("paris-node1", "paris"), ("marseille-node1", "marseille")):
        coords[name] = FakeCoordinator(server, name, ttl=6.0)
        await coords[name].join(MemberInfo(name, site, name, ("sms",)))
        states[name] = Cut()
        dogs[name] = Watchdog(coords[name], store, node=name, site=site,
                              store_state=states[name])
    await store.claim_batch("paris-node1", 45, site="paris")
    await store.claim_batch("paris-node1", 45, site="paris")
    assert (await dogs["paris-node1"].cycle()).startswith("paris-node1 leads")
    # the link between the datacenters is cut: paris-node1 keeps its membership (the witness)
    # but not the store; it stops sending and says so (nodes/store_health.py)
    states["paris-node1"].is_cut = True
    await coords["paris-node1"].join(MemberInfo("paris-node1", "paris", "paris-node1", ("sms",),
                                                store="cut"))
    assert await dogs["paris-node1"].cycle() == (
        "paris-node1: cut from PostgreSQL: gave up leading the watchdog to a node that "
        "reaches it")
    assert await coords["paris-node1"].leader(ELECTION) is None
    assert await dogs["paris-node1"].cycle() == ("paris-node1: cut from PostgreSQL: not "
                                                 "leading the watchdog")
    sentence = await dogs["marseille-node1"].cycle()
    assert sentence.startswith(
        "marseille-node1 leads: moved 2 batches of paris-node1 (cut from PostgreSQL while "
        "other nodes reach it) back to the queue for the 1 live member that reaches "
        "PostgreSQL (marseille 1, paris 0)")
    assert await store.batches_in_flight() == {}
    [event] = [e for e in store.events if e.kind == "watchdog.move"]
    assert event.details["cut"] == ["paris-node1"] and event.details["reserved"] == {}
    # no lease expiry was needed: the batches were claimed a moment ago with a 45 s lease
    batch = await store.claim_batch("marseille-node1", 45, site="marseille")
    assert batch is not None and batch.epoch == 2
