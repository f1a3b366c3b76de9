"""The inter-datacenter link cut, both sites still reaching the witness (issue 9, item 3), on a
real PostgreSQL: paris-node1 reaches the store through a relay that goes silent; marseille-node1
reaches it directly; both keep their memberships in one coordination service (the fake, always
reachable: the witness). paris-node1 leads the watchdog when the link is cut.

What must happen: paris-node1 stops sending within its store grace (3 s) plus the margin, gives
up the watchdog's lead, says ``cut``; marseille-node1 leads and moves paris-node1's batches at
once (not after their 45 s lease); the campaign completes on marseille's side long before the
lease could have expired; whatever paris-node1 still wanted to write once the link is back is
refused by the newer epochs (fencing)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import pytest

from cluster.coordination.base import MemberInfo
from failover.watchdog import ELECTION, Watchdog
from nodes.carriers.base import Message
from nodes.dispatcher import Dispatcher, DispatcherConfig
from nodes.member_publish import Publication
from nodes.store_health import CUT, AllGates, PgProbe, StoreHealth
from replication.store import PgCampaignStore
from tests.fakes.carriers import FakeCarrier, Script
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator
from tests.integration.relay import CuttingRelay
from tests.integration.support import AConn, scalar, sms_scenario

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
LEASE_S = 45.0
POPULATION = 1_200


@dataclass
class Node:
    name: str
    store: PgCampaignStore
    health: StoreHealth
    dispatcher: Dispatcher
    watchdog: Watchdog
    coordinator: FakeCoordinator
    sends: list[float] = field(default_factory=list)  # monotonic time of each send


async def _node(server: FakeCoordinationServer, name: str, dsn: str) -> Node:
    site = name.split("-")[0]
    coordinator = FakeCoordinator(server, name, ttl=5.0)
    me = MemberInfo(name, site, name, ("sms",))
    await coordinator.join(me)
    store = await PgCampaignStore.open(dsn, min_size=1, max_size=8, connect_s=5.0)
    health = StoreHealth(PgProbe(dsn), coordinator, Publication(coordinator, me), node=name,
                         site=site, grace_s=3.0, probe_s=0.5, heartbeat_s=1.0)
    sends: list[float] = []

    def decide(_m: Message) -> Script:
        sends.append(time.monotonic())
        return Script(delay_s=0.3)  # the receipt comes 0.3 s later

    carrier = FakeCarrier(f"sms-{site}", "sms", decide=decide)
    dispatcher = Dispatcher(store, {"sms": carrier},
                            DispatcherConfig(node=name, site=site, lease_s=LEASE_S,
                                             max_batches=2, idle_poll_s=0.05),
                            gate=AllGates(health))
    await carrier.start(dispatcher.on_receipt, dispatcher.on_ack)
    watchdog = Watchdog(coordinator, store, node=name, site=site, cycle_s=0.5,
                        store_state=health)
    health.on_cut = watchdog.step_down  # as nodes/main.py wires them
    return Node(name, store, health, dispatcher, watchdog, coordinator, sends)


async def _first_time(check: object, timeout: float) -> float:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return time.monotonic()


async def test_a_site_cut_from_the_store_stops_and_its_work_moves_before_the_lease(
        db_dsn: str, relay: tuple[CuttingRelay, str], sql_conn: AConn) -> None:
    cutting, relayed = relay
    server = FakeCoordinationServer()
    paris = await _node(server, "paris-node1", relayed)
    marseille = await _node(server, "marseille-node1", db_dsn)
    await paris.store.create_scenario(sms_scenario("flood"))
    campaign = await paris.store.launch_campaign("flood", "op", population=POPULATION,
                                                 batch_size=10)
    assert await paris.watchdog.cycle() != ""  # paris-node1 leads before the cut
    assert await paris.coordinator.leader(ELECTION) == "paris-node1"
    stop = asyncio.Event()
    tasks = [asyncio.create_task(t) for n in (paris, marseille)
             for t in (n.health.run(stop), n.dispatcher.run(), n.watchdog.run(stop))]
    try:
        await _first_time(lambda: _async(len(paris.sends) > 100), 20)
        await _first_time(lambda: _holds(marseille.store, "paris-node1"), 5)
        cut_at = time.monotonic()
        cutting.cut_now()
        stopped_at = await _first_time(lambda: _async(paris.health.state == CUT), 10)
        moved_at = await _first_time(lambda: _moved(sql_conn), 15)
        done_at = await _first_time(lambda: _completed(sql_conn, campaign), 40)
        cutting.reset()  # the link is back: what paris-node1 still holds is stale
        await _first_time(lambda: _async(paris.health.state != CUT), 10)
        await asyncio.sleep(1.5)
    finally:
        stop.set()
        for n in (paris, marseille):
            n.dispatcher.request_stop("now")
        await asyncio.gather(*tasks, return_exceptions=True)
        for n in (paris, marseille):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(n.store.close(), 5)
    print(f"cut: paris-node1 stopped after {stopped_at - cut_at:.1f} s, its batches moved "
          f"after {moved_at - cut_at:.1f} s, the campaign completed "
          f"{done_at - cut_at:.1f} s after the cut (lease {LEASE_S:g} s)")
    assert 3.0 <= stopped_at - cut_at <= 6.0, stopped_at - cut_at
    # it sent nothing once it knew (a send under way when the gate closed may finish)
    assert not [t for t in paris.sends if t > stopped_at + 0.05]
    assert moved_at - stopped_at <= 2.0, moved_at - stopped_at  # a cycle or two
    assert moved_at - cut_at <= 7.0  # an isolated site's bound (about 6 s), not the lease's
    assert done_at - cut_at < LEASE_S - 15
    cur = await sql_conn.execute(
        "SELECT doc->'details'->'cut', doc->>'sentence' FROM ledger"
        " WHERE kind = 'watchdog.move' ORDER BY seq")
    moves = await cur.fetchall()
    assert moves and moves[0][0] == ["paris-node1"]
    assert "cut from PostgreSQL while other nodes reach it" in moves[0][1]
    assert await scalar(sql_conn, "SELECT count(*) FROM recipients WHERE campaign_id = %s"
                        " AND state = 'pending'", campaign) == 0
    # the move did not wait for the lease: the batches were taken at a newer epoch while the
    # old lease still ran
    assert await scalar(sql_conn, "SELECT count(*) FROM claim_log c JOIN claim_log m ON"
                        " m.batch_id = c.batch_id AND m.kind = 'move'"
                        " WHERE c.kind = 'claim' AND c.node = 'paris-node1'"
                        " AND c.lease_until > m.at") > 0


async def _async(value: bool) -> bool:
    return value


async def _holds(store: PgCampaignStore, node: str) -> bool:
    return (await store.batches_in_flight()).get(node, 0) > 0


async def _moved(conn: AConn) -> bool:
    return bool(await scalar(conn, "SELECT count(*) FROM ledger WHERE kind = 'watchdog.move'"))


async def _completed(conn: AConn, campaign: int) -> bool:
    return bool(await scalar(conn, "SELECT completed_at IS NOT NULL FROM campaigns"
                             " WHERE id = %s", campaign))
