"""The campaign store on a real PostgreSQL: directory, launch, states, summaries."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from replication.store import PgCampaignStore
from replication.store_api import (
    ChannelStep,
    ContactIn,
    InvalidInput,
    NotFound,
    ScenarioIn,
)
from tests.integration.support import AConn, finals, scalar, sms_scenario, table_counts

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


# ---- contacts, groups, scenarios ------------------------------------------------------------

async def test_contacts_with_groups_round_trip(store: PgCampaignStore) -> None:
    n = await store.add_contacts([
        ContactIn("Alice Martin", mobile="+33612345678", email="alice@example.org",
                  groups=("astreinte", "cellule"), external_id="A1"),
        ContactIn("Bob Durand", phone="+33142000000", language="en", groups=("astreinte",)),
        ContactIn("Chloé", email="chloe@example.org"),
    ])
    assert n == 3
    contacts = await store.list_contacts()
    assert [c.name for c in contacts] == ["Alice Martin", "Bob Durand", "Chloé"]
    assert contacts[0].groups == ("astreinte", "cellule") and contacts[0].external_id == "A1"
    assert contacts[1].language == "en" and contacts[2].groups == ()
    assert await store.list_groups() == {"astreinte": 2, "cellule": 1}
    assert [c.name for c in await store.list_contacts(limit=1, offset=1)] == ["Bob Durand"]


async def test_bad_contact_names_its_line_and_stores_nothing(store: PgCampaignStore,
                                                             sql_conn: AConn) -> None:
    with pytest.raises(InvalidInput) as e:
        await store.add_contacts([ContactIn("Ok", mobile="+33612345678", groups=("g",)),
                                  ContactIn("Bad", mobile="0612345678")])
    assert e.value.field == "line 2" and "E.164" in e.value.problem
    assert await store.list_contacts() == [] and await store.list_groups() == {}
    with pytest.raises(InvalidInput, match="line 1"):
        await store.add_contacts([ContactIn("Nobody")])  # no address at all


async def test_external_id_is_unique(store: PgCampaignStore) -> None:
    await store.add_contacts([ContactIn("A", email="a@x.org", external_id="E1")])
    with pytest.raises(InvalidInput, match=r"line 2.*already exists"):
        await store.add_contacts([ContactIn("B", email="b@x.org", external_id="E2"),
                                  ContactIn("C", email="c@x.org", external_id="E1")])
    with pytest.raises(InvalidInput, match=r"line 2.*repeats line 1"):
        await store.add_contacts([ContactIn("B", email="b@x.org", external_id="E3"),
                                  ContactIn("C", email="c@x.org", external_id="E3")])
    assert len(await store.list_contacts()) == 1


@pytest.mark.parametrize("number", ["0612345678", "+0612345678", "+33 6 12 34 56 78", "+12345",
                                    "+1234567890123456", "+3361234567a"])
async def test_database_check_refuses_non_e164_numbers(sql_conn: AConn, number: str) -> None:
    # Straight to the database, past the store's own validation.
    for column in ("phone", "mobile"):
        with pytest.raises(psycopg.errors.CheckViolation, match=f"contacts_{column}_e164"):
            await sql_conn.execute(
                f"INSERT INTO contacts (name, {column}) VALUES ('X', %s)".encode(), (number,))
    await sql_conn.execute("INSERT INTO contacts (name, phone) VALUES ('Y', '+33142000000')")
    assert await scalar(sql_conn, "SELECT count(*) FROM contacts") == 1


async def test_groups_and_scenarios(store: PgCampaignStore) -> None:
    await store.create_group("elus")
    with pytest.raises(InvalidInput, match="already exists"):
        await store.create_group("elus")
    assert await store.list_groups() == {"elus": 0}
    created = await store.create_scenario(sms_scenario("flood", priority=2))
    assert created.id > 0 and created.priority == 2
    got = await store.get_scenario("flood")
    assert got == created and got.steps[1].ack == "dtmf" and got.steps[0].templates["en"]
    with pytest.raises(InvalidInput) as e:
        await store.create_scenario(sms_scenario("flood"))
    assert e.value.field == "name"
    with pytest.raises(NotFound):
        await store.get_scenario("nope")
    await store.create_scenario(sms_scenario("alpha"))
    assert [s.name for s in await store.list_scenarios()] == ["alpha", "flood"]


@pytest.mark.parametrize(("steps", "field"), [
    ((), "steps"),
    ((ChannelStep("sms", {"en": "no french"}),), "steps[0].templates"),
    ((ChannelStep("sms", {"fr": "x"}, ack="dtmf"),), "steps[0].ack"),
    ((ChannelStep("fax", {"fr": "x"}),), "steps[0].channel"),  # type: ignore[arg-type]
    ((ChannelStep("voice", {"fr": "x"}, retries=-1),), "steps[0].retries"),
])
async def test_bad_scenarios_are_refused(store: PgCampaignStore, steps: tuple[ChannelStep, ...],
                                         field: str) -> None:
    with pytest.raises(InvalidInput) as e:
        await store.create_scenario(ScenarioIn("bad", steps))
    assert e.value.field == field
    assert await store.list_scenarios() == []


# ---- launch -----------------------------------------------------------------------------------

async def test_population_launch_writes_campaign_batches_recipients(
        store: PgCampaignStore, sql_conn: AConn) -> None:
    await store.create_scenario(sms_scenario())
    cid = await store.launch_campaign("flood", "prefet-13", population=10_000, batch_size=100)
    counts = await table_counts(sql_conn)
    assert (counts["campaigns"], counts["batches"], counts["recipients"]) == (1, 100, 10_000)
    assert await scalar(sql_conn, "SELECT count(DISTINCT batch_id) FROM recipients") == 100
    assert await scalar(sql_conn, "SELECT max(c) FROM (SELECT count(*) c FROM recipients "
                                  "GROUP BY batch_id) x") == 100
    row = await (await sql_conn.execute(
        "SELECT name, phone, mobile, email, language FROM recipients ORDER BY name LIMIT 1"
    )).fetchone()
    assert row == ("Test 000001", "+336390000001", "+336390000001", "test-1@example.invalid",
                   "fr")
    # every synthetic number is distinct and E.164
    assert await scalar(sql_conn, "SELECT count(DISTINCT mobile) FROM recipients "
                                  "WHERE mobile ~ '^\\+[1-9][0-9]{6,14}$'") == 10_000
    s = await store.campaign_summary(cid)
    assert (s.state, s.recipients, s.pending, s.launched_by, s.scenario) == \
        ("running", 10_000, 10_000, "prefet-13", "flood")
    # a ragged last batch
    cid2 = await store.launch_campaign("flood", "x", population=250, batch_size=100)
    sizes = await (await sql_conn.execute(
        "SELECT b.recipients, count(r.id) FROM batches b JOIN recipients r ON r.batch_id = b.id "
        "WHERE b.campaign_id = %s GROUP BY b.id ORDER BY b.seq", (cid2,))).fetchall()
    assert sizes == [(100, 100), (100, 100), (50, 50)]


async def test_launch_is_one_transaction(store: PgCampaignStore, sql_conn: AConn) -> None:
    await store.create_scenario(sms_scenario())
    # Fail the launch midway, after the campaign and batches rows and 5,000 recipients.
    await sql_conn.execute("""
        CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'midway'; END $$;
        CREATE TRIGGER boom BEFORE INSERT ON recipients FOR EACH ROW
        WHEN (NEW.name = 'Test 005000') EXECUTE FUNCTION boom();""")
    with pytest.raises(psycopg.errors.RaiseException, match="midway"):
        await store.launch_campaign("flood", "x", population=10_000)
    assert set((await table_counts(sql_conn)).values()) == {0}
    await sql_conn.execute("DROP TRIGGER boom ON recipients")
    assert await store.launch_campaign("flood", "x", population=10_000) > 0


async def test_launch_refusals_store_nothing(store: PgCampaignStore, sql_conn: AConn) -> None:
    await store.create_scenario(sms_scenario())
    await store.create_group("empty")
    with pytest.raises(NotFound):
        await store.launch_campaign("nope", "x", population=10)
    with pytest.raises(InvalidInput) as e:  # the same error is also an InvalidInput
        await store.launch_campaign("nope", "x", population=10)
    assert e.value.field == "scenario"
    with pytest.raises(NotFound):
        await store.launch_campaign("flood", "x", group="nope")
    for kwargs, field in [({"group": "empty"}, "group"), ({}, "group"),
                          ({"group": "empty", "population": 3}, "group"),
                          ({"population": 0}, "population"),
                          ({"population": 10, "batch_size": 0}, "batch_size")]:
        with pytest.raises(InvalidInput) as e:
            await store.launch_campaign("flood", "x", **kwargs)  # type: ignore[arg-type]
        assert e.value.field == field, kwargs
    assert set((await table_counts(sql_conn)).values()) == {0}


async def test_group_launch_snapshots_the_contacts(store: PgCampaignStore,
                                                   sql_conn: AConn) -> None:
    await store.create_scenario(sms_scenario())
    await store.add_contacts([ContactIn(f"Agent {i}", mobile=f"+3361000000{i}", groups=("g",))
                              for i in range(5)] + [ContactIn("Other", email="o@x.org")])
    cid = await store.launch_campaign("flood", "x", group="g", batch_size=2)
    await sql_conn.execute("UPDATE contacts SET mobile = '+33699999999'")
    rows = await store.recipient_outcomes(cid)
    assert [r.name for r in rows] == [f"Agent {i}" for i in range(5)]
    assert await scalar(sql_conn, "SELECT count(*) FROM batches WHERE campaign_id = %s", cid) == 3
    mobiles = await (await sql_conn.execute(
        "SELECT mobile FROM recipients ORDER BY id")).fetchall()
    assert [m[0] for m in mobiles] == [f"+3361000000{i}" for i in range(5)]


# ---- states, summaries, outcomes ----------------------------------------------------------------

async def test_state_transitions(store: PgCampaignStore) -> None:
    await store.create_scenario(sms_scenario())
    cid = await store.launch_campaign("flood", "x", population=3)
    await store.set_campaign_state(cid, "paused")
    assert (await store.campaign_summary(cid)).state == "paused"
    await store.set_campaign_state(cid, "paused")  # again: no-op
    await store.set_campaign_state(cid, "running")
    with pytest.raises(InvalidInput, match="cannot become completed"):
        await store.set_campaign_state(cid, "completed")
    with pytest.raises(InvalidInput) as e:
        await store.set_campaign_state(cid, "finished")  # type: ignore[arg-type]
    assert e.value.field == "state"
    await store.set_campaign_state(cid, "cancelled")
    s = await store.campaign_summary(cid)
    assert s.state == "cancelled" and s.completed_at is not None
    for target in ("running", "paused"):
        with pytest.raises(InvalidInput, match="cancelled campaign cannot"):
            await store.set_campaign_state(cid, target)
    with pytest.raises(NotFound):
        await store.set_campaign_state(999, "paused")


async def test_completed_campaign_cannot_leave(store: PgCampaignStore) -> None:
    await store.create_scenario(sms_scenario())
    cid = await store.launch_campaign("flood", "x", population=2)
    b = await store.claim_batch("n1", 30)
    assert b is not None
    await store.record_outcomes(b.id, b.epoch, "n1", finals(b))
    await store.finish_batch(b.id, b.epoch, "n1")
    assert (await store.campaign_summary(cid)).state == "completed"
    for target in ("running", "paused", "cancelled"):
        with pytest.raises(InvalidInput, match="completed campaign cannot"):
            await store.set_campaign_state(cid, target)


async def test_summary_counts_and_by_site(store: PgCampaignStore) -> None:
    await store.create_scenario(sms_scenario())
    cid = await store.launch_campaign("flood", "x", population=10, batch_size=5)
    b1 = await store.claim_batch("paris-1", 30)
    b2 = await store.claim_batch("marseille-1", 30)
    assert b1 is not None and b2 is not None
    r1, r2 = b1.recipients, b2.recipients
    from tests.integration.support import outcome
    await store.record_outcomes(b1.id, b1.epoch, "paris-1", [
        outcome(r1[0], cid), outcome(r1[1], cid), outcome(r1[2], cid),
        outcome(r1[3], cid, state="failed"),
        outcome(r1[4], cid, state="sent", final=False)])
    await store.record_outcomes(b2.id, b2.epoch, "marseille-1", [
        outcome(r2[0], cid, site="marseille"), outcome(r2[1], cid, site="marseille"),
        outcome(r2[2], cid, site="marseille", channel="voice", step=1, final=False),
        outcome(r2[3], cid, state="failed", site="marseille")])
    assert await store.record_acknowledgement(f"{cid}:{r2[2].id}:voice:0", "dtmf") == \
        "recorded"
    s = await store.campaign_summary(cid)
    assert (s.recipients, s.delivered, s.acknowledged, s.failed, s.pending) == (10, 5, 1, 2, 2)
    assert s.by_site == {"marseille": 3, "paris": 3}
    listed = await store.list_campaigns()
    assert listed == [s]
    assert await store.list_campaigns(states=["running", "paused"]) == [s]
    assert await store.list_campaigns(states=["completed"]) == []
    with pytest.raises(InvalidInput, match="'done' is not one of"):
        await store.list_campaigns(states=["done"])  # type: ignore[list-item]


async def test_recipient_outcomes_paginate(store: PgCampaignStore) -> None:
    await store.create_scenario(sms_scenario())
    cid = await store.launch_campaign("flood", "x", population=25, batch_size=10)
    b = await store.claim_batch("n1", 30)
    assert b is not None
    await store.record_outcomes(b.id, b.epoch, "n1", finals(b, site="marseille"))
    pages = [await store.recipient_outcomes(cid, limit=10, offset=o) for o in (0, 10, 20, 30)]
    assert [len(p) for p in pages] == [10, 10, 5, 0]
    everyone = [r for p in pages for r in p]
    assert len({r.recipient_id for r in everyone}) == 25
    first = pages[0]
    assert {r.recipient_id for r in first} == {r.id for r in b.recipients}
    assert all(r.state == "delivered" and r.site == "marseille" and r.channel == "sms"
               and r.reference == f"{cid}:{r.recipient_id}:sms:0" and r.at is not None
               for r in first)
    assert all(r.state == "pending" and r.channel is None and r.at is None for r in pages[1])
    with pytest.raises(NotFound):
        await store.recipient_outcomes(999)
    with pytest.raises(InvalidInput):
        await store.recipient_outcomes(cid, limit=0)


async def test_many_clients_launch_at_once(store: PgCampaignStore, sql_conn: AConn) -> None:
    await store.create_scenario(sms_scenario())
    ids = await asyncio.gather(*(store.launch_campaign("flood", f"op{i}", population=2_000,
                                                       batch_size=50) for i in range(6)))
    assert len(set(ids)) == 6
    assert await scalar(sql_conn, "SELECT count(*) FROM recipients") == 12_000
    assert await scalar(sql_conn, "SELECT count(*) FROM recipients r JOIN batches b "
                                  "ON b.id = r.batch_id AND b.campaign_id = r.campaign_id") \
        == 12_000
