"""Same-site takeover on a real PostgreSQL (migrations/0004): a dead node's batches reserved for
its site for a hold, skipped by claimers of the other site until it ends, the reservation
cleared by the claim, the previous version's two-argument claim kept for rolling upgrades."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

import replication.migrate as migrate_mod
from replication.store import PgCampaignStore
from replication.store_api import ClaimedBatch, InvalidInput
from tests.integration.support import AConn, scalar, sms_scenario

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def _launch(store: PgCampaignStore, population: int = 10, batch_size: int = 5) -> int:
    await store.create_scenario(sms_scenario())
    return await store.launch_campaign("flood", "op", population=population,
                                       batch_size=batch_size)


async def _claim(store: PgCampaignStore, node: str, site: str | None) -> ClaimedBatch:
    b = await store.claim_batch(node, 30, site=site)
    assert b is not None
    return b


async def _reservation(conn: AConn, batch_id: int) -> tuple[object, ...]:
    cur = await conn.execute("SELECT state, owner, owner_site, reserved_site,"
                             " reserved_until > now() FROM batches WHERE id = %s", (batch_id,))
    row = await cur.fetchone()
    assert row is not None
    return tuple(row)


async def test_a_reserved_batch_is_skipped_by_the_other_site_and_taken_by_its_own(
        store: PgCampaignStore, sql_conn: AConn) -> None:
    await _launch(store, population=10, batch_size=5)  # 2 batches
    dead = await _claim(store, "paris-node1", "paris")
    assert await store.owner_sites() == {"paris-node1": "paris"}
    assert await store.reassign_batches("paris-node1", reserve_for="paris", hold_s=30) == 1
    assert await _reservation(sql_conn, dead.id) == ("pending", None, None, "paris", True)
    # marseille gets the other batch, not the reserved one, though it is older
    other = await _claim(store, "marseille-node1", "marseille")
    assert other.id != dead.id
    assert await store.claim_batch("marseille-node2", 30, site="marseille") is None
    # a node of paris takes it, with a higher epoch; the claim clears the reservation
    taken = await _claim(store, "paris-node2", "paris")
    assert (taken.id, taken.epoch) == (dead.id, dead.epoch + 1)
    assert await _reservation(sql_conn, dead.id) == ("claimed", "paris-node2", "paris", None,
                                                     None)
    assert await store.owner_sites() == {"paris-node2": "paris",
                                         "marseille-node1": "marseille"}


async def test_after_the_hold_anyone_takes_it(store: PgCampaignStore, sql_conn: AConn) -> None:
    await _launch(store, population=5, batch_size=5)
    dead = await _claim(store, "paris-node1", "paris")
    await store.reassign_batches("paris-node1", reserve_for="paris", hold_s=0.5)
    assert await store.claim_batch("marseille-node1", 30, site="marseille") is None
    await asyncio.sleep(0.7)
    taken = await _claim(store, "marseille-node1", "marseille")
    assert (taken.id, taken.epoch) == (dead.id, dead.epoch + 1)
    assert await _reservation(sql_conn, dead.id) == ("claimed", "marseille-node1", "marseille",
                                                     None, None)


async def test_a_claim_without_a_site_takes_reserved_batches(store: PgCampaignStore) -> None:
    await _launch(store, population=5, batch_size=5)
    dead = await _claim(store, "paris-node1", "paris")
    await store.reassign_batches("paris-node1", reserve_for="paris", hold_s=30)
    taken = await _claim(store, "tool", None)
    assert (taken.id, taken.epoch) == (dead.id, dead.epoch + 1)
    assert await store.owner_sites() == {}  # claimed without a site: its site is not known


@pytest.mark.parametrize(("reserve_for", "hold_s"), [(None, 0.0), ("paris", 0.0), (None, 5.0)])
async def test_no_reservation_without_both_a_site_and_a_hold(
        store: PgCampaignStore, sql_conn: AConn, reserve_for: str | None, hold_s: float) -> None:
    await _launch(store, population=5, batch_size=5)
    dead = await _claim(store, "paris-node1", "paris")
    await store.reassign_batches("paris-node1", reserve_for=reserve_for, hold_s=hold_s)
    assert await _reservation(sql_conn, dead.id) == ("pending", None, None, None, None)
    assert (await _claim(store, "marseille-node1", "marseille")).id == dead.id


async def test_bad_holds_are_refused(store: PgCampaignStore) -> None:
    for bad in (-1.0, float("nan"), 61.0, True):
        with pytest.raises(InvalidInput) as e:
            await store.reassign_batches("n", reserve_for="paris", hold_s=bad)
        assert e.value.field == "hold_s"
    with pytest.raises(InvalidInput) as e:
        await store.claim_batch("n", 30, site=" ")
    assert e.value.field == "site"


async def test_a_reservation_exists_only_on_a_pending_batch(
        store: PgCampaignStore, sql_conn: AConn) -> None:
    await _launch(store, population=5, batch_size=5)
    b = await _claim(store, "paris-node1", "paris")
    with pytest.raises(psycopg.errors.CheckViolation):
        await sql_conn.execute("UPDATE batches SET reserved_site = 'paris',"
                               " reserved_until = now() + interval '5 s' WHERE id = %s", (b.id,))
    await store.reassign_batches("paris-node1", reserve_for="paris", hold_s=30)
    with pytest.raises(psycopg.errors.CheckViolation):
        await sql_conn.execute("UPDATE batches SET reserved_until = NULL WHERE id = %s", (b.id,))


async def test_concurrent_claimers_of_both_sites_never_share_a_batch(
        store: PgCampaignStore) -> None:
    await _launch(store, population=400, batch_size=10)  # 40 batches
    dead = [await _claim(store, "paris-node1", "paris") for _ in range(10)]
    assert await store.reassign_batches("paris-node1", reserve_for="paris", hold_s=30) == 10
    got: dict[str, list[ClaimedBatch]] = {}

    async def claimer(node: str, site: str) -> None:
        got[node] = []
        while (b := await store.claim_batch(node, 30, site=site)) is not None:
            got[node].append(b)

    await asyncio.gather(*(claimer(f"{site}-node{i}", site) for i in range(4)
                           for site in ("paris", "marseille")))
    ids = [b.id for claims in got.values() for b in claims]
    assert len(ids) == 40 and len(set(ids)) == 40  # one owner per batch
    reserved = {b.id for b in dead}
    by_marseille = {b.id for node, claims in got.items() if node.startswith("marseille")
                    for b in claims}
    assert reserved.isdisjoint(by_marseille)
    assert all(b.epoch == 2 for claims in got.values() for b in claims if b.id in reserved)


async def test_the_previous_versions_claim_honours_every_reservation(
        store: PgCampaignStore, sql_conn: AConn) -> None:
    """A node of the previous version calls tenir_claim_batch(node, lease) during a rolling
    upgrade: its site is unknown, so it waits for the hold like a node of the other site."""
    await _launch(store, population=5, batch_size=5)
    dead = await _claim(store, "paris-node1", "paris")
    await store.reassign_batches("paris-node1", reserve_for="paris", hold_s=0.5)
    legacy = "SELECT out_batch_id, out_epoch FROM tenir_claim_batch(%s, %s)"
    assert await (await sql_conn.execute(legacy, ("old-node", 30.0))).fetchone() is None
    await asyncio.sleep(0.7)
    row = await (await sql_conn.execute(legacy, ("old-node", 30.0))).fetchone()
    assert row == (dead.id, dead.epoch + 1)
    assert await scalar(sql_conn, "SELECT owner_site FROM batches WHERE id = %s",
                        dead.id) is None


async def test_a_database_of_the_previous_version_upgrades_under_its_claims(
        empty_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """0004 applied while a batch is claimed through the old function: the claim stays valid,
    the old call still works, the new one too."""
    every = [m for m in migrate_mod.load_migrations() if m.version < "0005"]
    previous = [m for m in every if m.version < "0004"]
    monkeypatch.setattr(migrate_mod, "load_migrations", lambda: previous)
    await migrate_mod.migrate(empty_dsn)
    store = await PgCampaignStore.open(empty_dsn, min_size=1, max_size=2)
    try:
        await _launch(store, population=15, batch_size=5)
        async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
            cur = await conn.execute("SELECT out_batch_id, out_epoch"
                                     " FROM tenir_claim_batch('old-node', 30)")
            old = await cur.fetchone()
            assert old is not None
            monkeypatch.setattr(migrate_mod, "load_migrations", lambda: every)
            assert [m.split("_")[0] for m in await migrate_mod.migrate(empty_dsn)] == ["0004"]
            await store.renew_batch(old[0], old[1], "old-node", 30)  # still its claim
            cur = await conn.execute("SELECT out_batch_id FROM tenir_claim_batch('old-node', 30)")
            assert await cur.fetchone() is not None
        assert (await _claim(store, "paris-node1", "paris")).id != old[0]
        assert await store.owner_sites() == {"paris-node1": "paris"}
    finally:
        await store.close()


async def test_lifting_a_sites_holds_opens_its_batches_to_every_site(
        store: PgCampaignStore, sql_conn: AConn) -> None:
    await _launch(store, population=10, batch_size=5)
    first = await _claim(store, "paris-node1", "paris")
    second = await _claim(store, "paris-node2", "paris")
    await store.reassign_batches("paris-node1", reserve_for="paris", hold_s=30)
    await store.reassign_batches("paris-node2")  # not held: the other count stays
    assert await store.lift_reservations("marseille") == 0  # nothing held for marseille
    assert await store.claim_batch("marseille-node1", 30, site="marseille") is not None
    assert await store.claim_batch("marseille-node1", 30, site="marseille") is None  # held
    assert await store.lift_reservations("paris") == 1
    assert await store.lift_reservations("paris") == 0  # once
    taken = await _claim(store, "marseille-node1", "marseille")
    assert (taken.id, taken.epoch) == (first.id, first.epoch + 1)
    assert second.id != first.id
