"""A node cut off from PostgreSQL while its write is in flight (an isolated site) must not leave
a transaction open on the server: the campaign row every finish_batch locks, or a claimed
batch's row, would stall every other node (and the watchdog) until the server noticed.

A relay between the store and the real server forwards the store's request, then drops every
byte both ways (the server's answer and whatever the store sends next): only what the server
committed by itself, at the end of the statement, is there."""

from __future__ import annotations

import asyncio
import contextlib
import time

import psycopg
import pytest

from replication.store import PgCampaignStore
from tests.integration.relay import CuttingRelay
from tests.integration.support import AConn, finals, scalar, sms_scenario

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def _committed_within(conn: AConn, query: str, *params: object,
                            timeout: float = 5.0) -> object:
    """The value of ``query`` once it is truthy (as other sessions see it), or the last one."""
    deadline = time.monotonic() + timeout
    while True:
        value = await scalar(conn, query, *params)
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def _abandon(call: asyncio.Task[object], store: PgCampaignStore,
                   relay: CuttingRelay) -> None:
    """The store's call never gets its answer; then its connections die (as a node's do when
    its site is cut for good), which ends the call with an error."""
    assert not call.done(), "the call got an answer through a cut link"
    await relay.close()
    results = await asyncio.gather(call, return_exceptions=True)
    assert isinstance(results[0], psycopg.OperationalError)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(store.close(), 5)


async def test_a_finish_cut_off_in_flight_is_committed_and_locks_nothing(
        store: PgCampaignStore, sql_conn: AConn, relay: tuple[CuttingRelay, str]) -> None:
    await store.create_scenario(sms_scenario())
    campaign = await store.launch_campaign("flood", "op", population=10, batch_size=5)
    batch = await store.claim_batch("marseille-node1", 30, site="marseille")
    assert batch is not None
    await store.record_outcomes(batch.id, batch.epoch, "marseille-node1", finals(batch))
    cutting, dsn = relay
    cut_store = await PgCampaignStore.open(dsn, min_size=1, max_size=1)
    cutting.cut_after(b"tenir_finish_batch")
    call = asyncio.create_task(cut_store.finish_batch(batch.id, batch.epoch, "marseille-node1"))
    state = await _committed_within(
        sql_conn, "SELECT state = 'done' FROM batches WHERE id = %s", batch.id)
    await _abandon(call, cut_store, cutting)
    assert cutting.cut.is_set()
    assert state is True, "the finish the server ran was not committed without the client"
    # Nobody waits for the cut client: the campaign row is free for the other nodes' finishes.
    async with sql_conn.transaction():
        await sql_conn.execute("SET LOCAL lock_timeout = '1s'")
        await sql_conn.execute("SELECT 1 FROM campaigns WHERE id = %s FOR NO KEY UPDATE",
                               (campaign,))
    assert await scalar(sql_conn, "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                        " current_database() AND state LIKE 'idle in transaction%%'") == 0


async def test_a_claim_cut_off_in_flight_is_committed_and_its_batch_can_be_moved(
        store: PgCampaignStore, sql_conn: AConn, relay: tuple[CuttingRelay, str]) -> None:
    await store.create_scenario(sms_scenario())
    await store.launch_campaign("flood", "op", population=5, batch_size=5)
    cutting, dsn = relay
    cut_store = await PgCampaignStore.open(dsn, min_size=1, max_size=1)
    cutting.cut_after(b"tenir_claim_batch")
    call = asyncio.create_task(cut_store.claim_batch("marseille-node1", 30, site="marseille"))
    owner = await _committed_within(
        sql_conn, "SELECT max(owner) FROM batches WHERE state = 'claimed'")
    await _abandon(call, cut_store, cutting)
    assert owner == "marseille-node1"
    # The watchdog moves the cut node's batch at once: no open transaction holds its row.
    moved = await asyncio.wait_for(store.reassign_batches("marseille-node1"), 2)
    assert moved == 1
