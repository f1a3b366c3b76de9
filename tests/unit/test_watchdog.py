"""The watchdog on fakes: one leader, a frozen snapshot per cycle (members, site health, carrier
health, PostgreSQL as Patroni sees it, batches in flight), a sentence per cycle, dead nodes'
batches moved and recorded as events, no move while PostgreSQL has no primary; the pure decision
function and the snapshot's pure parts on their own."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import timedelta

import pytest

from cluster.coordination.base import MemberInfo
from failover.pg_state import NOT_CONFIGURED, PgState
from failover.snapshot import Snapshot, carrier_health, describe_channels, site_health
from failover.watchdog import HOLD_S, Watchdog, decide, describe_takers
from replication.store_api import ChannelStep, Event, ScenarioIn
from tests.fakes.clock import Clock
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit

ALL = ("sms", "email", "voice")
PRIMARY_PARIS = PgState(answered_by="http://10.213.0.11:8008", primary="paris-db",
                        primary_site="paris", sync_standby="marseille-db",
                        members=("marseille-db", "paris-db"))
PRIMARY_MARSEILLE = PgState(answered_by="http://10.213.0.21:8008", primary="marseille-db",
                            primary_site="marseille", members=("marseille-db", "paris-db"))
NO_PRIMARY = PgState(answered_by="http://10.213.0.21:8008", members=("marseille-db",))
def acted(store: MemoryStore) -> list[Event]:
    """What the watchdog did (moves, lifts), without its PostgreSQL sync-copy records."""
    return [e for e in store.events if not e.kind.startswith("postgres.")]


UNREACHABLE = PgState(unknown_because="no Patroni answered",
                      errors=("http://10.213.0.11:8008: no answer within 1 s",))


class FakePostgres:
    """A PostgresView whose answer the test sets."""

    def __init__(self, state: PgState) -> None:
        self.state = state
        self.reads = 0

    async def read(self) -> PgState:
        self.reads += 1
        return self.state


# --- pure parts -----------------------------------------------------------------------------------
def test_decide_moves_only_work_of_nodes_that_are_not_members() -> None:
    snap = Snapshot(0.0, "a", {"a": "paris", "b": "marseille"},
                    {"a": 2, "c": 3, "d": 0, "e": 1})
    assert decide(snap).reassign == ("c", "e")
    assert decide(Snapshot(0.0, "a", {"a": "paris"}, {"a": 4})).reassign == ()


@pytest.mark.parametrize("postgres", [PRIMARY_PARIS, UNREACHABLE, NOT_CONFIGURED],
                         ids=["primary", "unreachable", "not-configured"])
def test_decide_moves_unless_patroni_says_there_is_no_primary(postgres: PgState) -> None:
    snap = Snapshot(0.0, "a", {"a": "paris"}, {"a": 1, "c": 3}, postgres=postgres)
    assert decide(snap).reassign == ("c",) and decide(snap).wait == ()


def test_decide_waits_while_postgresql_has_no_primary() -> None:
    snap = Snapshot(0.0, "a", {"a": "paris"}, {"a": 1, "c": 3}, postgres=NO_PRIMARY)
    decision = decide(snap)
    assert (decision.reassign, decision.wait) == ((), ("c",))
    assert decision.notes == ("PostgreSQL has no primary (failover in progress)",)
    # nothing to move: nothing to wait for either
    assert decide(Snapshot(0.0, "a", {"a": "paris"}, {"a": 1}, postgres=NO_PRIMARY)) == \
        decide(Snapshot(0.0, "a", {"a": "paris"}, {"a": 1}))


def _dead(owner_sites: dict[str, str], sites: dict[str, int], **kw: object) -> Snapshot:
    """paris-node1 (no longer a member) holds 2 batches; marseille-node1 is alive."""
    return Snapshot(0.0, "marseille-node1", {"marseille-node1": "marseille"},
                    {"paris-node1": 2, "marseille-node1": 1}, sites=sites,
                    owner_sites=owner_sites, **kw)  # type: ignore[arg-type]


def test_decide_holds_a_dead_nodes_batches_for_its_site_while_it_has_live_members() -> None:
    snap = _dead({"paris-node1": "paris"}, {"marseille": 1, "paris": 1})
    decision = decide(snap)
    assert (decision.reassign, decision.reserve, decision.hold_s) == (
        ("paris-node1",), {"paris-node1": "paris"}, HOLD_S)
    assert decide(snap, hold_s=1.5).hold_s == 1.5


@pytest.mark.parametrize(("owner_sites", "sites", "hold_s"), [
    ({"paris-node1": "paris"}, {"marseille": 1, "paris": 0}, HOLD_S),  # its site is gone
    ({"paris-node1": "paris"}, {"marseille": 1}, HOLD_S),  # never seen: no live member either
    ({}, {"marseille": 1, "paris": 1}, HOLD_S),  # claimed without a site (previous version)
    ({"paris-node1": "paris"}, {"marseille": 1, "paris": 1}, 0.0),  # holding switched off
], ids=["site-lost", "site-unseen", "site-unknown", "no-hold"])
def test_decide_lets_anyone_take_them_at_once_otherwise(
        owner_sites: dict[str, str], sites: dict[str, int], hold_s: float) -> None:
    decision = decide(_dead(owner_sites, sites), hold_s=hold_s)
    assert (decision.reassign, decision.reserve, decision.hold_s) == (("paris-node1",), {}, 0.0)


def test_decide_waiting_for_a_primary_reserves_nothing_yet() -> None:
    decision = decide(_dead({"paris-node1": "paris"}, {"paris": 1}, postgres=NO_PRIMARY))
    assert (decision.wait, decision.reserve) == (("paris-node1",), {})


def test_describe_takers_names_the_held_nodes_when_several_moved() -> None:
    snap = Snapshot(0.0, None, {"p2": "paris", "p3": "paris", "m1": "marseille"}, {},
                    sites={"marseille": 1, "paris": 2})
    held = {"paris-node1": {"site": "paris", "hold_s": 3.0}}
    everyone = "3 live members (marseille 1, paris 2)"
    assert describe_takers({}, {"paris-node1": 2}, snap) == f" for the {everyone}"
    assert describe_takers(held, {"paris-node1": 2}, snap) == (
        f", reserved 3 s for paris (2 live members), then open to the {everyone}")
    both = {**held, "marseille-node2": {"site": "marseille", "hold_s": 2.5}}
    assert describe_takers(both, {"paris-node1": 2, "marseille-node2": 1, "x": 1}, snap) == (
        ", those of paris-node1 reserved 3 s for paris (2 live members), those of "
        f"marseille-node2 reserved 2.5 s for marseille (1 live member), then open to the "
        f"{everyone}")


def test_site_health_counts_live_members_and_keeps_known_sites_at_zero() -> None:
    members = [MemberInfo("p1", "paris", "h"), MemberInfo("p2", "paris", "h"),
               MemberInfo("m1", "marseille", "h")]
    assert site_health(members) == {"marseille": 1, "paris": 2}
    assert site_health(members[2:], {"paris", "marseille"}) == {"marseille": 1, "paris": 0}


def test_carrier_health_is_where_a_live_member_reports_the_channel_working() -> None:
    members = [MemberInfo("p1", "paris", "h", carriers=("email", "voice")),
               MemberInfo("p2", "paris", "h", carriers=("sms", "email")),
               MemberInfo("m1", "marseille", "h", carriers=("email", "fax"))]
    health = carrier_health(members)
    assert health == {"sms": ("paris",), "email": ("marseille", "paris"), "voice": ("paris",),
                      "fax": ("marseille",)}
    assert describe_channels(carrier_health(members[2:])) == (
        "sms nowhere, email in marseille, voice nowhere, fax in marseille")


def test_postgres_descriptions() -> None:
    assert dataclasses.replace(PRIMARY_PARIS, primary_site=None).describe() == (
        "PostgreSQL primary paris-db, sync standby marseille-db")  # no site tag: no site
    assert PRIMARY_MARSEILLE.describe() == (
        "PostgreSQL primary marseille-db (marseille), no sync standby")
    assert NO_PRIMARY.describe() == "PostgreSQL has no primary (failover in progress)"
    assert UNREACHABLE.describe() == "PostgreSQL unknown (no Patroni answered)"
    assert NOT_CONFIGURED.describe() == "PostgreSQL unknown (no Patroni URL configured)"


# --- the watchdog on fakes ------------------------------------------------------------------------
async def _lab() -> tuple[FakeCoordinationServer, MemoryStore, list[FakeCoordinator], int]:
    server = FakeCoordinationServer()
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("s", (ChannelStep("sms", {"fr": "x"}),)))
    campaign = await store.launch_campaign("s", "op", population=40, batch_size=10)
    coords = []
    for name, site, carriers in (("paris-node1", "paris", ALL),
                                 ("marseille-node1", "marseille", ("sms", "email"))):
        c = FakeCoordinator(server, name, ttl=6.0)
        await c.join(MemberInfo(name, site, name, carriers=carriers))
        coords.append(c)
    return server, store, coords, campaign


def _watchdogs(store: MemoryStore, paris: FakeCoordinator, marseille: FakeCoordinator,
               postgres: FakePostgres | None) -> tuple[Watchdog, Watchdog]:
    return (Watchdog(paris, store, node="paris-node1", site="paris", postgres=postgres),
            Watchdog(marseille, store, node="marseille-node1", site="marseille",
                     postgres=postgres))


async def _kill_paris_node1(server: FakeCoordinationServer, marseille: FakeCoordinator) -> None:
    """paris-node1 stops renewing (killed) while marseille-node1 renews, until it expires."""
    server.advance(4.0)
    await marseille.renew()
    server.advance(3.0)


@pytest.mark.asyncio
async def test_one_leader_the_other_follows_and_the_leader_summarises_its_snapshot() -> None:
    _, store, (paris, marseille), _ = await _lab()
    await store.claim_batch("paris-node1", 30)
    postgres = FakePostgres(PRIMARY_PARIS)
    w1, w2 = _watchdogs(store, paris, marseille, postgres)
    assert await w1.cycle() == (
        "paris-node1 leads: 2 members (marseille 1, paris 1), PostgreSQL primary paris-db "
        "(paris), sync standby marseille-db, sms in marseille+paris, email in marseille+paris, "
        "voice in paris; 1 batches in flight, nothing to move")
    assert await w2.cycle() == "marseille-node1: following watchdog leader paris-node1"
    assert postgres.reads == 1  # only the leader reads Patroni
    assert acted(store) == []
    assert "owner_sites" not in store.calls  # read only when a non-member holds batches
    snap = w1.last_snapshot
    assert snap is not None and w2.last_snapshot is None
    assert snap.sites == {"marseille": 1, "paris": 1}
    assert snap.channels == {"sms": ("marseille", "paris"), "email": ("marseille", "paris"),
                             "voice": ("paris",)}
    assert (snap.postgres.primary, snap.postgres.primary_site) == ("paris-db", "paris")


@pytest.mark.asyncio
async def test_without_patroni_the_sentence_says_postgresql_is_unknown() -> None:
    _, store, (paris, marseille), _ = await _lab()
    w1, _ = _watchdogs(store, paris, marseille, None)
    assert await w1.cycle() == (
        "paris-node1 leads: 2 members (marseille 1, paris 1), PostgreSQL unknown (no Patroni "
        "URL configured), sms in marseille+paris, email in marseille+paris, voice in paris; "
        "0 batches in flight, nothing to move")


@pytest.mark.asyncio
async def test_a_carrier_failing_at_a_site_shows_in_the_sentence() -> None:
    _, store, (paris, marseille), _ = await _lab()
    w1, _ = _watchdogs(store, paris, marseille, FakePostgres(PRIMARY_PARIS))
    # paris's SMS breaker opens: its node republishes its carriers without sms (nodes/channels.py)
    await paris.join(MemberInfo("paris-node1", "paris", "paris-node1",
                                carriers=("email", "voice")))
    sentence = await w1.cycle()
    assert "sms in marseille, email in marseille+paris, voice in paris;" in sentence
    await marseille.join(MemberInfo("marseille-node1", "marseille", "marseille-node1",
                                    carriers=("email",)))
    assert "sms nowhere, email in marseille+paris" in await w1.cycle()


@pytest.mark.asyncio
async def test_a_dead_node_loses_leadership_and_its_batches_move_with_an_event() -> None:
    server, store, (paris, marseille), campaign = await _lab()
    await store.claim_batch("paris-node1", 30)
    await store.claim_batch("paris-node1", 30)
    postgres = FakePostgres(PRIMARY_PARIS)
    w1, w2 = _watchdogs(store, paris, marseille, postgres)
    assert (await w1.cycle()).startswith("paris-node1 leads")
    server.advance(4.0)
    await marseille.renew()
    assert paris.may_act(safety=2.0) is False  # it would have self-fenced by now
    server.advance(3.0)  # paris-node1's lease expired: its member key and leadership are gone
    sentence = await w2.cycle()
    assert sentence == (
        "marseille-node1 leads: moved 2 batches of paris-node1 (no longer members) back to the "
        "queue for the 1 live member (marseille 1); PostgreSQL primary paris-db (paris), sync "
        "standby marseille-db, sms in marseille, email in marseille, voice nowhere")
    assert await store.batches_in_flight() == {}
    [event] = acted(store)
    assert event.kind == "watchdog.move" and event.sentence == sentence
    assert event.details["moved"] == {"paris-node1": 2}
    assert event.details["campaigns"] == {str(campaign): {"paris-node1": 2}}  # in flight
    assert event.details["members"] == ["marseille-node1"]
    assert event.details["sites"] == {"marseille": 1}
    assert event.details["channels"] == {"sms": ["marseille"], "email": ["marseille"],
                                         "voice": []}
    assert event.details["postgres"] == {
        "known": True, "primary": "paris-db", "primary_site": "paris",
        "sync_standby": "marseille-db", "members": ["marseille-db", "paris-db"],
        "answered_by": "http://10.213.0.11:8008", "unknown_because": None}
    assert event.details["reserved"] == {}  # its site is unknown: claimed without one
    assert set(event.details) == {"moved", "reserved", "lifted", "cut", "campaigns", "members",
                                  "sites", "channels", "postgres"}
    # the next cycle has nothing left to do
    assert (await w2.cycle()).endswith("nothing to move")


@pytest.mark.asyncio
async def test_a_site_seen_before_counts_zero_and_names_the_primary_site() -> None:
    server, store, (paris, marseille), _ = await _lab()
    await store.claim_batch("paris-node1", 30)
    postgres = FakePostgres(PRIMARY_MARSEILLE)
    _, w2 = _watchdogs(store, paris, marseille, postgres)
    await w2.cycle()  # follows paris-node1: reads no member, knows only its own site
    await paris.resign("watchdog")
    assert (await w2.cycle()).startswith(
        "marseille-node1 leads: 2 members (marseille 1, paris 1), PostgreSQL primary "
        "marseille-db (marseille), no sync standby")
    await _kill_paris_node1(server, marseille)  # every member of paris is gone
    sentence = await w2.cycle()
    assert sentence.startswith("marseille-node1 leads: moved 1 batches of paris-node1 (no longer "
                               "members) back to the queue for the 1 live member "
                               "(marseille 1, paris 0); PostgreSQL primary marseille-db "
                               "(marseille)")
    assert acted(store)[0].details["sites"] == {"marseille": 1, "paris": 0}


@pytest.mark.asyncio
async def test_no_move_while_postgresql_has_no_primary_then_move_once_it_has_one() -> None:
    server, store, (paris, marseille), _ = await _lab()
    await store.claim_batch("paris-node1", 30)
    await store.claim_batch("paris-node1", 30)
    postgres = FakePostgres(NO_PRIMARY)
    _, w2 = _watchdogs(store, paris, marseille, postgres)
    await _kill_paris_node1(server, marseille)
    sentence = await w2.cycle()
    assert sentence == (
        "marseille-node1 leads: PostgreSQL has no primary (failover in progress): waiting before "
        "moving 2 batches of paris-node1 (no longer members); 1 member (marseille 1), "
        "sms in marseille, email in marseille, voice nowhere")
    assert await store.batches_in_flight() == {"paris-node1": 2}
    assert acted(store) == []
    assert await w2.cycle() == sentence  # still waiting, still the same sentence
    postgres.state = PRIMARY_MARSEILLE  # Patroni promoted marseille-db
    moved = await w2.cycle()
    assert moved.startswith("marseille-node1 leads: moved 2 batches of paris-node1")
    assert "PostgreSQL primary marseille-db (marseille)" in moved
    assert await store.batches_in_flight() == {}
    [event] = acted(store)
    assert event.details["moved"] == {"paris-node1": 2}
    assert event.details["postgres"]["primary"] == "marseille-db"


@pytest.mark.asyncio
async def test_an_unreachable_patroni_does_not_stop_the_move() -> None:
    server, store, (paris, marseille), _ = await _lab()
    await store.claim_batch("paris-node1", 30)
    _, w2 = _watchdogs(store, paris, marseille, FakePostgres(UNREACHABLE))
    await _kill_paris_node1(server, marseille)
    sentence = await w2.cycle()
    assert sentence.startswith("marseille-node1 leads: moved 1 batches of paris-node1")
    assert "PostgreSQL unknown (no Patroni answered)" in sentence
    assert acted(store)[0].details["postgres"]["known"] is False
    assert acted(store)[0].details["postgres"]["unknown_because"] == "no Patroni answered"


@pytest.mark.asyncio
async def test_an_unreadable_store_while_there_is_no_primary_is_waiting_not_failing() -> None:
    _, store, (paris, marseille), _ = await _lab()
    postgres = FakePostgres(NO_PRIMARY)
    w1, _ = _watchdogs(store, paris, marseille, postgres)
    store.unavailable = True
    assert await w1.cycle() == (
        "paris-node1 leads: PostgreSQL has no primary (failover in progress): waiting; the "
        "snapshot could not be read (ConnectionError: campaign store unreachable)")
    postgres.state = PRIMARY_PARIS  # with a primary, a failing store is a failing cycle
    with pytest.raises(ConnectionError):
        await w1.cycle()


@pytest.mark.asyncio
async def test_a_failing_postgres_view_is_unknown_not_a_failed_cycle() -> None:
    class Broken:
        async def read(self) -> PgState:
            raise RuntimeError("bug")

    _, store, (paris, _), _ = await _lab()
    w1 = Watchdog(paris, store, node="paris-node1", site="paris", postgres=Broken())
    assert "PostgreSQL unknown (Patroni view failed)" in await w1.cycle()


@pytest.mark.asyncio
async def test_run_logs_the_sentence_with_the_snapshot_facts(
        caplog: pytest.LogCaptureFixture) -> None:
    _, store, (paris, marseille), _ = await _lab()
    w1, _ = _watchdogs(store, paris, marseille, FakePostgres(PRIMARY_PARIS))
    w1.cycle_s = 0.01
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="tenir.watchdog"):
        task = asyncio.create_task(w1.run(stop))
        await asyncio.sleep(0.05)
        stop.set()
        await task
    [record] = [r for r in caplog.records if r.name == "tenir.watchdog"]  # logged once
    assert record.getMessage() == w1.last_sentence
    # Batches claimed between cycles change the count, not what the watchdog says: no new line.
    await store.claim_batch("marseille-node1", 30, site="marseille")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tenir.watchdog"):
        stop = asyncio.Event()
        task = asyncio.create_task(w1.run(stop))
        await asyncio.sleep(0.05)
        stop.set()
        await task
    assert "1 batches in flight" in await w1.cycle()
    assert [r for r in caplog.records if r.name == "tenir.watchdog"] == []
    assert record.watchdog["postgres"]["primary"] == "paris-db"  # type: ignore[attr-defined]
    assert record.watchdog["sites"] == {"marseille": 1, "paris": 1}  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_unreachable_coordination_means_not_acting() -> None:
    server, store, (paris, _), _ = await _lab()
    server.reachable = False
    postgres = FakePostgres(PRIMARY_PARIS)
    w1 = Watchdog(paris, store, node="paris-node1", site="paris", postgres=postgres)
    assert "cannot reach the coordination service" in await w1.cycle()
    assert acted(store) == [] and postgres.reads == 0


# --- same-site takeover -------------------------------------------------------------------------


async def _takeover_lab(paris_nodes: int) -> tuple[FakeCoordinationServer, MemoryStore, Clock,
                                                   list[FakeCoordinator]]:
    """paris-node1 (the watchdog leader) holds 2 of 4 batches, claimed for paris; then it dies,
    while paris-node2 (if ``paris_nodes`` is 2) and marseille-node1 stay members."""
    clock = Clock()
    server, store = FakeCoordinationServer(), MemoryStore(clock=clock)
    await store.create_scenario(ScenarioIn("s", (ChannelStep("sms", {"fr": "x"}),)))
    await store.launch_campaign("s", "op", population=40, batch_size=10)
    coords = []
    names = [*("paris-node1", "paris-node2")[:paris_nodes], "marseille-node1"]
    for name in names:
        c = FakeCoordinator(server, name, ttl=6.0)
        await c.join(MemberInfo(name, name.split("-")[0], name, carriers=ALL))
        coords.append(c)
    assert await coords[0].campaign("watchdog")
    await store.claim_batch("paris-node1", 30, site="paris")
    await store.claim_batch("paris-node1", 30, site="paris")
    server.advance(4.0)
    for c in coords[1:]:
        await c.renew()
    server.advance(3.0)  # paris-node1's membership and leadership expired
    return server, store, clock, coords


@pytest.mark.asyncio
async def test_a_dead_nodes_batches_are_held_for_its_site_then_open_to_anyone() -> None:
    _, store, clock, coords = await _takeover_lab(paris_nodes=2)
    # marseille-node1 leads now; it never saw paris-node1's membership, the store knows its site
    w = Watchdog(coords[-1], store, node="marseille-node1", site="marseille",
                 postgres=FakePostgres(PRIMARY_PARIS))
    sentence = await w.cycle()
    assert sentence == (
        "marseille-node1 leads: moved 2 batches of paris-node1 (no longer members) back to the "
        "queue, reserved 3 s for paris (1 live member), then open to the 2 live members "
        "(marseille 1, paris 1); PostgreSQL primary paris-db (paris), sync standby "
        "marseille-db, sms in marseille+paris, email in marseille+paris, voice in "
        "marseille+paris")
    [event] = acted(store)
    assert event.sentence == sentence and event.details["moved"] == {"paris-node1": 2}
    assert event.details["reserved"] == {"paris-node1": {"site": "paris", "hold_s": 3.0}}
    # marseille takes only the batches nobody held, not the reserved ones, until the hold ends
    taken = [await store.claim_batch("marseille-node1", 30, site="marseille") for _ in range(3)]
    assert [b.id if b else None for b in taken] == [3, 4, None]
    clock.now += timedelta(seconds=2.9)
    assert await store.claim_batch("marseille-node1", 30, site="marseille") is None
    paris = await store.claim_batch("paris-node2", 30, site="paris")  # its own site: at once
    assert paris is not None and (paris.id, paris.epoch) == (1, 2)
    clock.now += timedelta(seconds=0.1)
    late = await store.claim_batch("marseille-node1", 30, site="marseille")
    assert late is not None and (late.id, late.epoch) == (2, 2)


@pytest.mark.asyncio
async def test_a_hold_ends_at_once_when_its_sites_last_member_dies_too() -> None:
    """A dying site's nodes expire one after the other: the first one's batches are held for a
    site that is about to have nobody; the next cycle that sees it empty opens them to all."""
    server, store, _, coords = await _takeover_lab(paris_nodes=2)
    w = Watchdog(coords[-1], store, node="marseille-node1", site="marseille",
                 postgres=FakePostgres(PRIMARY_PARIS))
    assert "reserved 3 s for paris (1 live member)" in await w.cycle()
    assert await store.claim_batch("marseille-node1", 30, site="marseille") is not None
    assert await store.claim_batch("marseille-node1", 30, site="marseille") is not None
    assert await store.claim_batch("marseille-node1", 30, site="marseille") is None  # held
    await coords[-1].renew()
    server.advance(4.0)  # paris-node2 expired too, within the hold (the store's clock stood)
    sentence = await w.cycle()
    assert sentence.startswith(
        "marseille-node1 leads: opened the 2 batches held for paris to every site (no live "
        "member left there); 1 member (marseille 1, paris 0)"), sentence
    lift = acted(store)[-1]
    assert (lift.kind, lift.details["lifted"]) == ("watchdog.lift", {"paris": 2})
    taken = await store.claim_batch("marseille-node1", 30, site="marseille")
    assert taken is not None and taken.id in (1, 2)
    assert "opened" not in await w.cycle()  # lifted once


@pytest.mark.asyncio
async def test_with_no_live_member_left_in_its_site_anyone_takes_them_at_once() -> None:
    _, store, _, coords = await _takeover_lab(paris_nodes=1)
    w = Watchdog(coords[-1], store, node="marseille-node1", site="marseille")
    sentence = await w.cycle()
    # a leader that never saw paris's members knows paris from the store: it counts 0
    assert sentence.startswith(
        "marseille-node1 leads: moved 2 batches of paris-node1 (no longer members) back to the "
        "queue for the 1 live member (marseille 1, paris 0); PostgreSQL unknown")
    assert acted(store)[0].details["reserved"] == {}
    assert [(b.id, b.epoch) for b in [await store.claim_batch("marseille-node1", 30,
                                                              site="marseille")] if b] == [(1, 2)]


@pytest.mark.asyncio
async def test_a_watchdog_with_hold_zero_reserves_nothing_and_bad_holds_are_refused() -> None:
    _, store, _, coords = await _takeover_lab(paris_nodes=2)
    w = Watchdog(coords[-1], store, node="marseille-node1", site="marseille", hold_s=0)
    assert "back to the queue for the 2 live members" in await w.cycle()
    assert acted(store)[0].details["reserved"] == {}
    for bad in (-1.0, 61.0, float("nan")):
        with pytest.raises(ValueError, match="hold_s"):
            Watchdog(coords[-1], store, node="marseille-node1", site="marseille", hold_s=bad)

