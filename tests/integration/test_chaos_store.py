"""The chaos collectors and checkers against a real PostgreSQL: the observer's history of a
zombie write, with fencing on (refused, the fencing checker valid) and with it switched off
through the superuser-only test switch (accepted, the fencing checker invalid); an outcome
deleted behind the store's back (the rpo checker invalid); the switch out of the application
role's reach."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
import pytest

from chaos.checkers import fencing, recipients, rpo, watchdog
from chaos.history import History
from chaos.nemesis import Nemesis
from chaos.pg_observer import PgObserver
from replication.store import PgCampaignStore
from replication.store_api import ClaimedBatch, StaleEpoch
from tests.integration.support import AConn, outcome, scalar, sms_scenario

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

SWITCHES = "CREATE TABLE public.tenir_unsafe_switches (name text PRIMARY KEY, enabled boolean)"


class Freeze:
    """Stands for SIGSTOP of a node: the test itself plays the frozen node afterwards."""

    def describe(self) -> str:
        return "freeze paris-node1"

    def inject(self) -> None:
        pass

    def heal(self) -> None:
        pass


async def _claim(store: PgCampaignStore, node: str, site: str) -> ClaimedBatch:
    b = await store.claim_batch(node, 30, site=site)
    assert b is not None
    return b


async def zombie_run(store: PgCampaignStore, db_dsn: str, *,
                     tamper: Any = None) -> tuple[History, bool]:
    """paris-node1 claims a batch, records one outcome, freezes; the watchdog moves its batch,
    marseille-node1 takes it over; the zombie wakes and writes with its old epoch. Returns the
    history and whether that stale write was accepted."""
    h = History()
    await store.create_scenario(sms_scenario())
    campaign = await store.launch_campaign("flood", "op", population=6, batch_size=3)
    h.add("workload:0", "ok", "launch", {"campaign": campaign, "recipients": 6})
    accepted = False
    async with PgObserver(db_dsn, h) as obs:
        zombie = await _claim(store, "paris-node1", "paris")
        first, second, third = zombie.recipients
        await store.record_outcomes(zombie.id, zombie.epoch, "paris-node1",
                                    [outcome(first, campaign, cmid="c-first")])
        await Nemesis(h, barrier=obs.read).inject("freeze", Freeze(), {"nodes": ["paris-node1"]})
        assert await store.reassign_batches("paris-node1") == 1
        await obs.read()
        if tamper is not None:
            await tamper(campaign, first)
        taker = await _claim(store, "marseille-node1", "marseille")
        assert (taker.id, taker.epoch) == (zombie.id, zombie.epoch + 1)
        try:
            await store.record_outcomes(zombie.id, zombie.epoch, "paris-node1",
                                        [outcome(second, campaign, cmid="c-zombie")])
            accepted = True
        except StaleEpoch:
            pass
        taker = dataclasses.replace(taker, recipients=tuple(
            r for r in taker.recipients if r.id != second.id or not accepted))
        await store.record_outcomes(taker.id, taker.epoch, "marseille-node1", [
            outcome(r, campaign, site="marseille", cmid=f"m-{r.id}") for r in taker.recipients])
        await store.finish_batch(taker.id, taker.epoch, "marseille-node1")
        other = await _claim(store, "marseille-node1", "marseille")
        await store.record_outcomes(other.id, other.epoch, "marseille-node1", [
            outcome(r, campaign, site="marseille") for r in other.recipients])
        await store.finish_batch(other.id, other.epoch, "marseille-node1")
        await obs.read()
        await obs.final(campaign)
    assert third.id in {r.id for r in taker.recipients}
    return h, accepted


async def test_with_fencing_the_zombie_is_refused_and_every_checker_is_valid(
        store: PgCampaignStore, db_dsn: str) -> None:
    h, accepted = await zombie_run(store, db_dsn)
    assert not accepted
    v = fencing.check(h, expect_refusals=True)
    assert v.validity == "valid", v
    assert v.figures["refused"] == 1 and v.figures["accepted_writes"] >= 3
    for check in (recipients.check(h), rpo.check(h, max_window_s=0.5), watchdog.check(h)):
        assert check.validity == "valid", check
    refs = [op.value["reference"] for op in h.of("outcome")]
    assert len(refs) == 6 and len(set(refs)) == 6  # each read adds only what is new
    assert len(h.of("read")) == 3  # the barrier before the fault, after the move, at the end
    kinds = [op.value["kind"] for op in h.of("claim")]
    assert kinds.count("claim") == 3 and "move" in kinds and kinds.count("finish") == 2
    assert [op.value["campaign"] for op in h.of("complete")] == [h.of("final")[0].value[
        "campaign"]]


async def test_with_fencing_switched_off_the_zombie_write_is_accepted_and_caught(
        store: PgCampaignStore, db_dsn: str, sql_conn: AConn) -> None:
    await sql_conn.execute(SWITCHES)
    await sql_conn.execute(
        "INSERT INTO public.tenir_unsafe_switches VALUES ('fencing_disabled', true)")
    h, accepted = await zombie_run(store, db_dsn)
    assert accepted  # the broken behaviour happened...
    v = fencing.check(h)
    assert v.validity == "invalid", v  # ...and the checker says so, naming the write
    stale = next(op for op in h.of("claim") if op.value["kind"] == "write"
                 and op.value["node"] == "paris-node1" and op.value["current_epoch"] == 2)
    assert stale.index in v.offences[0].ops
    assert "epoch 1 accepted while the batch was at epoch 2" in v.offences[0].reason


async def test_an_outcome_deleted_behind_the_stores_back_is_caught_by_rpo(
        store: PgCampaignStore, db_dsn: str, sql_conn: AConn) -> None:
    async def lose(campaign: int, first: Any) -> None:
        # What a failover that lost a committed transaction would leave: the attempt gone and
        # the recipient pending again, so the new holder sends it again, same reference.
        await sql_conn.execute("DELETE FROM attempts WHERE recipient_id = %s",
                                        (first.id,))
        await sql_conn.execute(
            "UPDATE recipients SET state = 'pending', attempt = 0, final_channel = NULL,"
            " final_site = NULL, final_reference = NULL, final_at = NULL WHERE id = %s",
            (first.id,))

    h, _ = await zombie_run(store, db_dsn, tamper=lose)
    # Every recipient ends with one final outcome and the set of references is the same as
    # before the fault (the old check passed): only what a resend cannot regenerate differs.
    assert recipients.check(h).validity == "valid"
    v = rpo.check(h)
    assert v.validity == "invalid", v
    assert "c-first became m-" in v.offences[0].reason


async def test_the_application_role_cannot_turn_the_switch_on(
        store: PgCampaignStore, db_dsn: str, sql_conn: AConn) -> None:
    await sql_conn.execute("CREATE ROLE chaos_app LOGIN")
    await sql_conn.execute("GRANT ALL ON SCHEMA public TO chaos_app")
    await sql_conn.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO chaos_app")
    try:
        app_dsn = psycopg.conninfo.make_conninfo(db_dsn, user="chaos_app")
        async with await psycopg.AsyncConnection.connect(app_dsn, autocommit=True) as app:
            # Its own table of that name is ignored: not owned by a superuser.
            await app.execute(SWITCHES)
            await app.execute(
                "INSERT INTO public.tenir_unsafe_switches VALUES ('fencing_disabled', true)")
            assert await scalar(app, "SELECT tenir_unsafe_switch('fencing_disabled')") is False
            await app.execute("DROP TABLE public.tenir_unsafe_switches")
            # The superuser's table: readable, not writable.
            await sql_conn.execute(SWITCHES)
            await sql_conn.execute(
                "GRANT SELECT ON public.tenir_unsafe_switches TO chaos_app")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await app.execute("INSERT INTO public.tenir_unsafe_switches"
                                  " VALUES ('fencing_disabled', true)")
            assert await scalar(app, "SELECT tenir_unsafe_switch('fencing_disabled')") is False
            await sql_conn.execute(
                "INSERT INTO public.tenir_unsafe_switches VALUES ('fencing_disabled', true)")
            assert await scalar(app, "SELECT tenir_unsafe_switch('fencing_disabled')") is True
            with pytest.raises(psycopg.Error, match="append-only"):
                await app.execute("TRUNCATE claim_log")
    finally:
        await sql_conn.execute("DROP OWNED BY chaos_app")
        await sql_conn.execute("DROP ROLE chaos_app")


async def test_the_observer_keeps_to_the_campaigns_launched_in_its_history(
        store: PgCampaignStore, db_dsn: str) -> None:
    await store.create_scenario(sms_scenario())
    older = await store.launch_campaign("flood", "op", population=3, batch_size=3)
    mine = await store.launch_campaign("flood", "op", population=3, batch_size=3)
    h = History()
    async with PgObserver(db_dsn, h) as obs:
        await obs.skip_existing()
        h.add("workload:0", "ok", "launch", {"campaign": mine, "recipients": 3})
        for node in ("paris-node1", "paris-node2"):  # the older campaign's batch first
            batch = await _claim(store, node, "paris")
            await store.record_outcomes(batch.id, batch.epoch, node,
                                        [outcome(r, batch.campaign_id) for r in batch.recipients])
        await obs.read()
        assert obs.followed == [mine]
    seen = {op.value["campaign"] for op in h.of("outcome")}
    assert seen == {mine} and older != mine  # an earlier run's campaign is not read
    assert len(h.of("outcome")) == 3
