"""Dispatch on a real PostgreSQL: claims, fencing decided by the database, outcomes, receipts,
acknowledgements, completion."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from replication.store import PgCampaignStore
from replication.store_api import ClaimedBatch, ContactIn, InvalidInput, NotFound, StaleEpoch
from replication.store_codec import pack_outcomes
from tests.integration.support import (
    AConn,
    finals,
    outcome,
    raw_record,
    scalar,
    sms_scenario,
    table_counts,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def _launch(store: PgCampaignStore, population: int = 10, batch_size: int = 5,
                  scenario: str = "flood", priority: int = 5) -> int:
    try:
        await store.get_scenario(scenario)
    except NotFound:
        await store.create_scenario(sms_scenario(scenario, priority))
    return await store.launch_campaign(scenario, "op", population=population,
                                       batch_size=batch_size)


async def _claim(store: PgCampaignStore, node: str, lease_s: float = 30) -> ClaimedBatch:
    b = await store.claim_batch(node, lease_s)
    assert b is not None
    return b


# ---- claims ---------------------------------------------------------------------------------

async def test_claim_hands_a_batch_with_epoch_lease_and_recipients(
        store: PgCampaignStore) -> None:
    cid = await _launch(store)
    b = await _claim(store, "paris-1", 30)
    assert (b.campaign_id, b.epoch, b.node, len(b.recipients)) == (cid, 1, "paris-1", 5)
    assert b.scenario.name == "flood" and b.scenario.steps[0].channel == "sms"
    assert all(r.step == 0 and r.attempt == 0 and r.mobile for r in b.recipients)
    assert b.lease_until.tzinfo is not None
    b2 = await _claim(store, "paris-2")
    assert b2.id != b.id
    assert await store.claim_batch("paris-3", 30) is None  # both batches taken


async def test_concurrent_claimers_never_share_a_batch(store: PgCampaignStore) -> None:
    await _launch(store, population=600, batch_size=10)  # 60 batches
    got: dict[str, list[int]] = {}

    async def claimer(node: str) -> None:
        got[node] = []
        while (b := await store.claim_batch(node, 30)) is not None:
            got[node].append(b.id)

    await asyncio.gather(*(claimer(f"node-{i}") for i in range(10)))
    ids = [i for lst in got.values() for i in lst]
    assert len(ids) == 60 and len(set(ids)) == 60
    assert sum(1 for lst in got.values() if lst) > 1  # really concurrent


async def test_claim_skips_a_locked_batch_instead_of_waiting(store: PgCampaignStore,
                                                             db_dsn: str) -> None:
    await _launch(store, population=10, batch_size=5)
    async with await psycopg.AsyncConnection.connect(db_dsn) as other:
        await other.execute("SELECT id FROM batches ORDER BY id LIMIT 1 FOR UPDATE")
        b = await asyncio.wait_for(store.claim_batch("n1", 30), 5)
        assert b is not None
        first = await (await other.execute("SELECT min(id) FROM batches")).fetchone()
        assert first is not None and b.id != first[0]
        await other.rollback()


async def test_claim_order_priority_then_age_and_only_running(store: PgCampaignStore) -> None:
    low = await _launch(store, population=2, batch_size=2, scenario="drill", priority=9)
    high = await _launch(store, population=2, batch_size=2, scenario="flood", priority=1)
    paused = await _launch(store, population=2, batch_size=2, scenario="alert", priority=1)
    await store.set_campaign_state(paused, "paused")
    assert (await _claim(store, "n")).campaign_id == high
    assert (await _claim(store, "n")).campaign_id == low
    assert await store.claim_batch("n", 30) is None
    await store.set_campaign_state(paused, "running")
    assert (await _claim(store, "n")).campaign_id == paused


async def test_release_keeps_epoch_and_next_claim_increments(store: PgCampaignStore) -> None:
    await _launch(store, population=5, batch_size=5)
    b = await _claim(store, "n1")
    await store.renew_batch(b.id, b.epoch, "n1", 60)
    await store.record_outcomes(b.id, b.epoch, "n1", [
        outcome(b.recipients[0], b.campaign_id, state="sent", final=False, attempt=0),
        outcome(b.recipients[1], b.campaign_id),
    ])
    await store.release_batch(b.id, b.epoch, "n1")
    b2 = await _claim(store, "n2")
    assert (b2.id, b2.epoch) == (b.id, b.epoch + 1)
    # the final one is no longer handed out; the other one resumes after its attempt
    assert len(b2.recipients) == 4
    resumed = {r.id: (r.step, r.attempt) for r in b2.recipients}
    assert resumed[b.recipients[0].id] == (0, 1)
    with pytest.raises(StaleEpoch):
        await store.release_batch(b.id, b.epoch, "n1")


async def test_expired_lease_is_taken_over_and_the_late_holder_refused(
        store: PgCampaignStore) -> None:
    await _launch(store, population=5, batch_size=5)
    b = await _claim(store, "slow", lease_s=1.0)
    assert await store.claim_batch("fast", 30) is None  # lease still valid
    await asyncio.sleep(1.3)
    b2 = await _claim(store, "fast")
    assert (b2.id, b2.epoch) == (b.id, b.epoch + 1)
    with pytest.raises(StaleEpoch):
        await store.record_outcomes(b.id, b.epoch, "slow", finals(b))
    with pytest.raises(StaleEpoch):
        await store.renew_batch(b.id, b.epoch, "slow", 30)


# ---- fencing --------------------------------------------------------------------------------

async def test_stale_record_is_refused_stores_nothing_and_is_counted(
        store: PgCampaignStore, sql_conn: AConn) -> None:
    await _launch(store, population=5, batch_size=5)
    b = await _claim(store, "n1")
    assert await store.fencing_rejections() == 0
    before = await table_counts(sql_conn)
    with pytest.raises(StaleEpoch) as e:
        await store.record_outcomes(b.id, b.epoch - 1, "n1", finals(b))
    assert (e.value.batch_id, e.value.epoch, e.value.node) == (b.id, b.epoch - 1, "n1")
    with pytest.raises(StaleEpoch):
        await store.record_outcomes(b.id, b.epoch, "intruder", finals(b))
    after = await table_counts(sql_conn)
    assert after["attempts"] == before["attempts"] == 0
    assert await scalar(sql_conn, "SELECT count(*) FROM recipients WHERE state <> 'pending'") == 0
    # the refusals survived the refusal: counted, with their evidence
    assert await store.fencing_rejections() == 2
    rows = await (await sql_conn.execute(
        "SELECT operation, epoch, node, current_epoch, current_owner, rows_refused "
        "FROM fencing_rejections ORDER BY id")).fetchall()
    assert rows == [("record_outcomes", b.epoch - 1, "n1", b.epoch, "n1", 5),
                    ("record_outcomes", b.epoch, "intruder", b.epoch, "n1", 5)]
    await store.record_outcomes(b.id, b.epoch, "n1", finals(b))  # the holder still writes
    assert await scalar(sql_conn, "SELECT count(*) FROM attempts") == 5


async def test_database_itself_refuses_a_stale_write(store: PgCampaignStore,
                                                    sql_conn: AConn) -> None:
    """A client that bypasses the store and calls the function directly is refused too."""
    await _launch(store, population=5, batch_size=5)
    b = await _claim(store, "n1")
    assert await raw_record(sql_conn, b.id, b.epoch + 1, "n1", finals(b)) == "stale"
    assert await scalar(sql_conn, "SELECT count(*) FROM attempts") == 0
    assert await scalar(sql_conn, "SELECT count(*) FROM fencing_rejections") == 1
    assert await raw_record(sql_conn, b.id, b.epoch, "n1", finals(b)) == "ok"
    assert await scalar(sql_conn, "SELECT count(*) FROM attempts") == 5


async def test_the_json_flush_is_fenced_and_refuses_rows_of_the_wrong_shape(
        store: PgCampaignStore, sql_conn: AConn) -> None:
    """The store's flush (two JSON parameters, migration 0010) called directly: fenced like
    the arrays; a row of the wrong length or a non-array is refused by name and writes
    nothing."""
    await _launch(store, population=5, batch_size=5)
    b = await _claim(store, "n1")
    at = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    attempts, recipients = pack_outcomes([replace(o, at=at) for o in finals(b)]).to_json()
    call = "SELECT tenir_record_outcomes_json(%s, %s, %s, %s::jsonb, %s::jsonb)"
    assert await scalar(sql_conn, call, b.id, b.epoch + 1, "n1", attempts, recipients) \
        == "stale"
    assert await scalar(sql_conn, "SELECT count(*) FROM fencing_rejections") == 1
    short = json.dumps([row[:10] for row in json.loads(attempts)])
    for bad_attempts, bad_recipients, said in (
            (short, recipients, "outcome row 1 has the wrong shape"),
            (attempts, '{"id": 1}', "two JSON arrays of rows expected")):
        with pytest.raises(psycopg.Error, match=said):
            await scalar(sql_conn, call, b.id, b.epoch, "n1", bad_attempts, bad_recipients)
    assert await scalar(sql_conn, "SELECT count(*) FROM attempts") == 0
    assert await scalar(sql_conn, call, b.id, b.epoch, "n1", attempts, recipients) == "ok"
    rows = await (await sql_conn.execute(
        "SELECT r.state, r.final_at, a.sent_at FROM recipients r"
        " JOIN attempts a ON a.reference = r.final_reference"
        " WHERE r.batch_id = %s ORDER BY r.id", (b.id,))).fetchall()
    assert rows == [("delivered", at, at)] * 5  # the times as the node stamped them
    assert await scalar(sql_conn, "SELECT count(*) FROM attempts") == 5


async def test_after_reassign_and_new_claim_the_old_owner_is_refused(
        store: PgCampaignStore, sql_conn: AConn) -> None:
    await _launch(store, population=10, batch_size=5)
    a1 = await _claim(store, "dead-node")
    a2 = await _claim(store, "dead-node")
    assert await store.reassign_batches("dead-node") == 2
    assert await store.reassign_batches("dead-node") == 0
    # even before anyone claims again, the old owner no longer owns anything
    with pytest.raises(StaleEpoch):
        await store.renew_batch(a1.id, a1.epoch, "dead-node", 30)
    n1 = await _claim(store, "live-node")
    n2 = await _claim(store, "live-node")
    assert {n1.id, n2.id} == {a1.id, a2.id}
    new = {n1.id: n1, n2.id: n2}
    assert new[a1.id].epoch == a1.epoch + 1
    with pytest.raises(StaleEpoch):
        await store.record_outcomes(a1.id, a1.epoch, "dead-node", finals(a1, state="failed"))
    with pytest.raises(StaleEpoch):
        await store.finish_batch(a1.id, a1.epoch, "dead-node")
    survivor = new[a1.id]
    await store.record_outcomes(survivor.id, survivor.epoch, "live-node", finals(survivor))
    await store.finish_batch(survivor.id, survivor.epoch, "live-node")
    states = await (await sql_conn.execute(
        "SELECT DISTINCT state FROM recipients WHERE batch_id = %s", (a1.id,))).fetchall()
    assert states == [("delivered",)]  # the late "failed" writes never landed
    assert await store.fencing_rejections() == 3


async def test_unknown_batch_and_recipient_outside_the_batch(store: PgCampaignStore,
                                                             sql_conn: AConn) -> None:
    cid = await _launch(store, population=10, batch_size=5)
    b1 = await _claim(store, "n1")
    b2 = await _claim(store, "n1")
    with pytest.raises(NotFound):
        await store.record_outcomes(9999, 1, "n1", finals(b1))
    mixed = [*finals(b1), outcome(b2.recipients[0], cid)]
    with pytest.raises(InvalidInput, match="not in batch"):
        await store.record_outcomes(b1.id, b1.epoch, "n1", mixed)
    assert await scalar(sql_conn, "SELECT count(*) FROM attempts") == 0  # all or nothing
    with pytest.raises(InvalidInput) as e:
        await store.record_outcomes(b1.id, b1.epoch, "n1",
                                    [outcome(b1.recipients[0], cid, state="sent", final=True)])
    assert e.value.field == "outcomes[0].state"


# ---- outcomes -------------------------------------------------------------------------------

async def test_exactly_one_final_outcome_per_recipient(store: PgCampaignStore,
                                                       sql_conn: AConn) -> None:
    cid = await _launch(store, population=2, batch_size=2)
    b = await _claim(store, "n1")
    r, s = b.recipients
    await store.record_outcomes(b.id, b.epoch, "n1", [outcome(r, cid, site="paris")])
    # a second final outcome (another attempt, another site) does not replace the first
    await store.record_outcomes(b.id, b.epoch, "n1", [
        outcome(r, cid, state="failed", site="marseille", channel="voice", step=1)])
    # two finals in one flush: the first of the flush wins
    await store.record_outcomes(b.id, b.epoch, "n1", [
        outcome(s, cid, state="failed", attempt=0), outcome(s, cid, state="delivered",
                                                            attempt=1)])
    got = {o.recipient_id: o for o in await store.recipient_outcomes(cid)}
    assert (got[r.id].state, got[r.id].site, got[r.id].reference) == \
        ("delivered", "paris", f"{cid}:{r.id}:sms:0")
    assert (got[s.id].state, got[s.id].reference) == ("failed", f"{cid}:{s.id}:sms:0")
    assert await scalar(sql_conn, "SELECT count(*) FROM attempts") == 4  # every attempt kept
    s_ = await store.campaign_summary(cid)
    assert (s_.delivered, s_.failed, s_.pending) == (1, 1, 0)


async def test_same_reference_merges_state_upward(store: PgCampaignStore,
                                                  sql_conn: AConn) -> None:
    cid = await _launch(store, population=1, batch_size=1)
    b = await _claim(store, "n1")
    r = b.recipients[0]
    ref = f"{cid}:{r.id}:sms:0"
    await store.record_outcomes(b.id, b.epoch, "n1", [
        outcome(r, cid, state="sent", final=False),
        outcome(r, cid, state="delivered", final=False, cmid="m-1")])  # one flush, one ref
    await store.record_outcomes(b.id, b.epoch, "n1", [outcome(r, cid, state="sent",
                                                              final=False)])  # late, lower
    row = await (await sql_conn.execute(
        "SELECT state, carrier_message_id FROM attempts WHERE reference = %s", (ref,))
    ).fetchone()
    assert row == ("delivered", "m-1")


async def test_receipts_update_attempts_even_when_they_come_first(
        store: PgCampaignStore, sql_conn: AConn) -> None:
    cid = await _launch(store, population=2, batch_size=2)
    b = await _claim(store, "n1")
    r, s = b.recipients
    ref_r, ref_s = f"{cid}:{r.id}:sms:0", f"{cid}:{s.id}:sms:0"
    await store.record_outcomes(b.id, b.epoch, "n1", [outcome(r, cid, state="sent",
                                                              final=False)])
    assert await store.record_receipt(ref_r, "delivered", "m-r") == "recorded"
    assert await store.record_receipt(ref_r, "sent", None) == "recorded"  # never moves back
    # the receipt of s arrives before the dispatcher, which waits on it, flushed its send
    assert await store.record_receipt(ref_s, "delivered", "m-s", in_flight=True) == "kept"
    await store.record_outcomes(b.id, b.epoch, "n1", [outcome(s, cid, state="sent",
                                                              final=False)])
    rows: dict[str, str] = dict(await (await sql_conn.execute(
        "SELECT reference, state || '/' || carrier_message_id FROM attempts")).fetchall())
    assert rows == {ref_r: "delivered/m-r", ref_s: "delivered/m-s"}
    assert await scalar(sql_conn, "SELECT count(*) FROM receipts WHERE NOT matched") == 0
    with pytest.raises(InvalidInput):
        await store.record_receipt(ref_r, "acknowledged", None)


async def test_unknown_or_repeated_receipts_add_no_row(store: PgCampaignStore,
                                                        sql_conn: AConn) -> None:
    cid = await _launch(store, population=1, batch_size=1)
    b = await _claim(store, "n1")
    r = b.recipients[0]
    ref = f"{cid}:{r.id}:voice:0"
    for n in range(50):  # junk: nobody sent these, nobody waits on them
        assert await store.record_receipt(f"{cid}:{n}:voice:0.{n}", "failed", None) == "unknown"
    assert await store.record_receipt(ref, "delivered", "c1") == "unknown"  # not sent yet
    await store.record_outcomes(b.id, b.epoch, "n1", [outcome(r, cid, channel="voice",
                                                              state="sent", final=False)])
    for _ in range(20):  # one receipt, replayed
        assert await store.record_receipt(ref, "delivered", "c1") == "recorded"
    assert await scalar(sql_conn, "SELECT count(*) FROM receipts") == 1


async def test_acknowledgements_are_checked_before_anything_is_stored(
        store: PgCampaignStore, sql_conn: AConn) -> None:
    cid = await _launch(store, population=3, batch_size=3)
    b = await _claim(store, "n1")
    r, s, t = b.recipients
    ref = f"{cid}:{r.id}:voice:0"
    # early: not recorded, nobody waits on it: refused, not kept for later
    assert await store.record_acknowledgement(ref, "dtmf") == "early"
    # unknown: no such recipient, or a recipient of another campaign
    assert await store.record_acknowledgement(f"{cid}:999999:voice:0", "dtmf") == "unknown"
    assert await store.record_acknowledgement(f"{cid + 1}:{r.id}:voice:0", "dtmf") == "unknown"
    assert await store.record_acknowledgement("no-such-reference", "link") == "unknown"
    assert await scalar(sql_conn, "SELECT count(*) FROM acknowledgements") == 0
    # in flight: kept, and applied when the attempt is recorded
    assert await store.record_acknowledgement(ref, "dtmf", in_flight=True) == "kept"
    await store.record_outcomes(b.id, b.epoch, "n1", [
        outcome(r, cid, channel="voice", state="delivered", final=False, site="marseille"),
        outcome(s, cid, state="delivered", final=True)])
    first = {o.recipient_id: o for o in await store.recipient_outcomes(cid)}[r.id]
    assert (first.state, first.channel, first.site, first.reference) == \
        ("acknowledged", "voice", "marseille", ref)
    # replayed once final: refused, nothing changes
    assert await store.record_acknowledgement(ref, "dtmf") == "final"
    assert await store.record_acknowledgement(f"{cid}:{s.id}:sms:0", "reply") == "final"
    assert {o.recipient_id: o.state for o in await store.recipient_outcomes(cid)} == \
        {r.id: "acknowledged", s.id: "delivered", t.id: "pending"}
    assert await scalar(sql_conn, "SELECT count(*) FROM acknowledgements") == 1
    # a recorded attempt of a pending recipient: acknowledged
    t_ref = f"{cid}:{t.id}:email:0"
    await store.record_outcomes(b.id, b.epoch, "n1", [
        outcome(t, cid, channel="email", state="delivered", final=False)])
    assert await store.record_acknowledgement(t_ref, "link") == "recorded"
    assert {o.recipient_id: o.state for o in await store.recipient_outcomes(cid)}[t.id] == \
        "acknowledged"


async def test_erasing_a_contact_blanks_its_recipients_and_keeps_their_outcomes(
        store: PgCampaignStore, sql_conn: AConn) -> None:
    await store.add_contacts([
        ContactIn("Jeanne Martin", mobile="+33612345678", email="jeanne@example.org",
                  groups=("astreinte",), external_id="J1"),
        ContactIn("Paul Durand", mobile="+33698765432", groups=("astreinte",))])
    await store.create_scenario(sms_scenario())
    cid = await store.launch_campaign("flood", "alice", group="astreinte")
    jeanne = (await store.list_contacts())[0]
    b = await _claim(store, "n1")
    await store.record_outcomes(b.id, b.epoch, "n1", [outcome(b.recipients[0], cid)])
    assert await store.erase_contact(jeanne.id) == 1
    assert [c.name for c in await store.list_contacts()] == ["Paul Durand"]
    assert await store.list_groups() == {"astreinte": 1}
    rows = await (await sql_conn.execute(
        "SELECT name, phone, mobile, email, contact_id, state FROM recipients ORDER BY id")
    ).fetchall()
    assert rows[0] == ("(erased)", None, None, None, None, "delivered")  # outcome kept
    assert rows[1][0] == "Paul Durand"
    assert await scalar(sql_conn, "SELECT count(*) FROM contacts WHERE external_id = 'J1'") == 0
    with pytest.raises(NotFound):
        await store.erase_contact(jeanne.id)


# ---- finishing and completion ------------------------------------------------------------------

async def test_campaign_completes_when_all_batches_finished(store: PgCampaignStore) -> None:
    cid = await _launch(store, population=10, batch_size=5)
    b1 = await _claim(store, "n1")
    b2 = await _claim(store, "n2")
    with pytest.raises(InvalidInput, match="5 pending"):
        await store.finish_batch(b1.id, b1.epoch, "n1")  # its recipients would be lost
    await store.record_outcomes(b1.id, b1.epoch, "n1", finals(b1))
    await store.finish_batch(b1.id, b1.epoch, "n1")
    s = await store.campaign_summary(cid)
    assert s.state == "running" and s.completed_at is None
    await store.finish_batch(b1.id, b1.epoch, "n1")  # a retry by the same claim: no-op
    with pytest.raises(StaleEpoch):
        await store.finish_batch(b1.id, b1.epoch, "n2")  # done: nobody else's either
    with pytest.raises(StaleEpoch):
        await store.record_outcomes(b1.id, b1.epoch, "n1", finals(b1))  # done: no more writes
    assert await store.fencing_rejections() == 2
    await store.record_outcomes(b2.id, b2.epoch, "n2", finals(b2, "failed"))
    await store.finish_batch(b2.id, b2.epoch, "n2")
    s = await store.campaign_summary(cid)
    assert (s.state, s.pending, s.delivered, s.failed) == ("completed", 0, 5, 5)
    assert s.completed_at is not None and s.completed_at >= s.started_at
    assert await store.claim_batch("n3", 30) is None


async def test_last_two_batches_finished_at_once_complete_the_campaign(
        store: PgCampaignStore) -> None:
    for _ in range(5):
        cid = await _launch(store, population=4, batch_size=2)
        b1 = await _claim(store, "n1")
        b2 = await _claim(store, "n2")
        await store.record_outcomes(b1.id, b1.epoch, "n1", finals(b1))
        await store.record_outcomes(b2.id, b2.epoch, "n2", finals(b2))
        await asyncio.gather(store.finish_batch(b1.id, b1.epoch, "n1"),
                             store.finish_batch(b2.id, b2.epoch, "n2"))
        assert (await store.campaign_summary(cid)).state == "completed"


async def test_cancelled_campaign_batches_finish_without_completing(
        store: PgCampaignStore) -> None:
    cid = await _launch(store, population=10, batch_size=5)
    b = await _claim(store, "n1")
    await store.set_campaign_state(cid, "cancelled")
    assert await store.claim_batch("n2", 30) is None
    await store.finish_batch(b.id, b.epoch, "n1")  # pending recipients allowed: cancelled
    s = await store.campaign_summary(cid)
    assert (s.state, s.pending) == ("cancelled", 10)


# ---- races and pools ---------------------------------------------------------------------------

async def test_receipt_racing_the_outcome_write_waits_for_it(store: PgCampaignStore,
                                                             db_dsn: str,
                                                             sql_conn: AConn) -> None:
    cid = await _launch(store, population=1, batch_size=1)
    b = await _claim(store, "n1")
    r = b.recipients[0]
    ref = f"{cid}:{r.id}:sms:0"
    async with await psycopg.AsyncConnection.connect(db_dsn) as writer:
        # an outcome write in flight: the batch is locked and the attempt not committed yet
        sent = outcome(r, cid, state="sent", final=False)
        assert await raw_record(writer, b.id, b.epoch, "n1", [sent]) == "ok"
        receipt = asyncio.create_task(store.record_receipt(ref, "delivered", "m-1"))
        await asyncio.sleep(0.3)
        assert not receipt.done()  # it waits for the writer instead of missing its attempt
        await writer.commit()
        await asyncio.wait_for(receipt, 5)
    row = await (await sql_conn.execute(
        "SELECT a.state, r.matched FROM attempts a JOIN receipts r USING (reference)")
    ).fetchone()
    assert row == ("delivered", True)


async def test_store_on_a_pool_without_autocommit(db_dsn: str, sql_conn: AConn) -> None:
    from psycopg_pool import AsyncConnectionPool

    async with AsyncConnectionPool(db_dsn, min_size=1, max_size=2, open=False) as pool:
        store = PgCampaignStore(pool)
        await store.create_scenario(sms_scenario())
        cid = await store.launch_campaign("flood", "op", population=4, batch_size=4)
        b = await _claim(store, "n1")
        with pytest.raises(StaleEpoch):
            await store.record_outcomes(b.id, b.epoch + 1, "n1", finals(b))
        await store.record_outcomes(b.id, b.epoch, "n1", finals(b))
        await store.finish_batch(b.id, b.epoch, "n1")
        await store.close()  # not its pool: stays open
        assert not pool.closed
    assert await scalar(sql_conn, "SELECT state FROM campaigns WHERE id = %s", cid) == "completed"
    assert await scalar(sql_conn, "SELECT count(*) FROM fencing_rejections") == 1
