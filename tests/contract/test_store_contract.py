"""The campaign store's contract (``replication/store_api.py``), asserted identically on the
in-memory fake and on PostgreSQL: claims and epochs, fencing, outcomes, takeover, reservations,
completion, events and the ownership view."""

from __future__ import annotations

import asyncio

import pytest

from replication.store_api import CampaignStore, InvalidInput, NotFound, StaleEpoch
from tests.contract.kit import LEASE, claim, finish_all, launch, out

pytestmark = pytest.mark.asyncio


async def test_claims_hand_each_batch_once_with_a_growing_epoch(store: CampaignStore) -> None:
    campaign = await launch(store, population=7, batch_size=3)  # batches of 3, 3, 1
    a = await claim(store, "paris-node1")
    b = await claim(store, "marseille-node1", "marseille")
    c = await claim(store, "paris-node2")
    assert [len(x.recipients) for x in (a, b, c)] == [3, 3, 1]
    assert len({a.id, b.id, c.id}) == 3 and {a.epoch, b.epoch, c.epoch} == {1}
    assert a.campaign_id == campaign and a.node == "paris-node1"
    assert [s.channel for s in a.scenario.steps] == ["sms", "voice"]
    assert await store.claim_batch("paris-node3", LEASE, site="paris") is None
    assert await store.batches_in_flight() == {"paris-node1": 1, "marseille-node1": 1,
                                               "paris-node2": 1}
    assert await store.owner_sites() == {"paris-node1": "paris", "marseille-node1": "marseille",
                                         "paris-node2": "paris"}
    assert await store.batches_in_flight_by_campaign() == {campaign: {
        "paris-node1": 1, "marseille-node1": 1, "paris-node2": 1}}
    assert await store.reassign_batches("paris-node1") == 1
    again = await claim(store, "marseille-node2", "marseille")
    assert (again.id, again.epoch) == (a.id, 2)


async def test_priority_then_age_and_paused_campaigns_are_skipped(
        store: CampaignStore) -> None:
    low = await launch(store, population=2, batch_size=2, name="low", priority=7)
    high = await launch(store, population=2, batch_size=2, name="high", priority=2)
    await store.set_campaign_state(high, "paused")
    assert (await claim(store, "n1")).campaign_id == low
    await store.set_campaign_state(high, "running")
    await store.reassign_batches("n1")
    assert (await claim(store, "n1")).campaign_id == high


async def test_a_stale_holder_is_refused_everywhere_and_counted(store: CampaignStore) -> None:
    campaign = await launch(store)
    old = await claim(store, "paris-node1")
    await store.reassign_batches("paris-node1")
    new = await claim(store, "marseille-node1", "marseille")
    assert (new.id, new.epoch) == (old.id, old.epoch + 1)
    before = await store.fencing_rejections()
    with pytest.raises(StaleEpoch):
        await store.record_outcomes(old.id, old.epoch, "paris-node1",
                                    [out(old.recipients[0], campaign)])
    for call in (store.renew_batch(old.id, old.epoch, "paris-node1", LEASE),
                 store.finish_batch(old.id, old.epoch, "paris-node1"),
                 store.release_batch(old.id, old.epoch, "paris-node1")):
        with pytest.raises(StaleEpoch):
            await call
    assert await store.fencing_rejections() == before + 4
    rows = await store.recipient_outcomes(campaign)
    assert all(r.state == "pending" for r in rows)  # nothing of the stale write stored
    with pytest.raises(NotFound):
        await store.record_outcomes(9999, 1, "paris-node1", [])


async def test_renewing_together_renews_what_is_held_and_refuses_only_the_stale(
        store: CampaignStore) -> None:
    await launch(store, population=9, batch_size=3)
    first = [await claim(store, "paris-node1") for _ in range(3)]
    await store.reassign_batches("paris-node1")  # all three back to pending: none ours now
    a = await claim(store, "paris-node1", lease_s=1.0)
    b = await claim(store, "paris-node1", lease_s=1.0)
    taken = await claim(store, "marseille-node1", "marseille")
    assert {a.id, b.id, taken.id} == {x.id for x in first}
    before = await store.fencing_rejections()
    refused = await store.renew_batches(
        "paris-node1", [(a.id, a.epoch), (taken.id, taken.epoch - 1), (b.id, b.epoch)], LEASE)
    assert refused == {taken.id}
    assert await store.fencing_rejections() == before + 1
    assert await store.renew_batches("paris-node1", [], LEASE) == set()
    await asyncio.sleep(1.3)  # past the 1 s they were claimed for: renewed, nobody takes them
    assert await store.claim_batch("marseille-node2", LEASE, site="marseille") is None
    assert await store.held_by("paris-node1") == {a.id: a.epoch, b.id: b.epoch}
    with pytest.raises(NotFound):
        await store.renew_batches("paris-node1", [(a.id, a.epoch), (9999, 1)], LEASE)


async def test_an_expired_lease_is_taken_over_and_the_late_holder_refused(
        store: CampaignStore) -> None:
    campaign = await launch(store, population=3, batch_size=3)
    late = await claim(store, "paris-node1", lease_s=0.2)
    await asyncio.sleep(0.4)  # the fake's default clock is the wall clock, as PostgreSQL's
    taker = await claim(store, "marseille-node1", "marseille")
    assert (taker.id, taker.epoch) == (late.id, late.epoch + 1)
    with pytest.raises(StaleEpoch):
        await store.record_outcomes(late.id, late.epoch, "paris-node1",
                                    [out(late.recipients[0], campaign)])


async def test_outcomes_first_final_wins_late_acks_refused_receipts_wait(
        store: CampaignStore) -> None:
    campaign = await launch(store, population=3, batch_size=3)
    b = await claim(store, "paris-node1")
    r1, r2, r3 = b.recipients
    # a receipt for an attempt still in flight (its outcome not recorded yet) is kept for it
    assert await store.record_receipt(f"{campaign}:{r3.id}:sms:0", "delivered", "early-id",
                                      in_flight=True) == "kept"
    await store.record_outcomes(b.id, b.epoch, "paris-node1", [
        out(r1, campaign, cmid="m1"),
        out(r2, campaign, state="failed", final=False),
        out(r3, campaign, state="sent", final=False),
    ])
    await store.record_outcomes(b.id, b.epoch, "paris-node1", [
        out(r1, campaign, state="failed", attempt=1),  # a later final does not replace it
    ])
    # an acknowledgement counts while its attempt waits for one; once the recipient is final it
    # is too late (or a replay): refused, and nothing changes
    assert await store.record_acknowledgement(f"{campaign}:{r1.id}:sms:0", "reply") == "final"
    assert await store.record_acknowledgement("99:99:sms:0", "reply") == "unknown"
    rows = {r.recipient_id: r for r in await store.recipient_outcomes(campaign)}
    assert rows[r1.id].state == "delivered"
    assert rows[r1.id].reference == f"{campaign}:{r1.id}:sms:0"
    assert rows[r2.id].state == "pending" and rows[r3.id].state == "pending"
    summary = await store.campaign_summary(campaign)
    assert (summary.acknowledged, summary.pending, summary.by_site) == (0, 2, {"paris": 1})
    await store.reassign_batches("paris-node1")
    again = await claim(store, "paris-node2")
    where = {r.id: (r.step, r.attempt) for r in again.recipients}
    assert where == {r2.id: (0, 1), r3.id: (0, 1)}  # attempts made so far come back
    with pytest.raises(InvalidInput):
        await store.record_outcomes(again.id, again.epoch, "paris-node2",
                                    [out(r1, campaign, state="sent", final=True)])


async def test_an_outcome_outside_the_batch_refuses_the_whole_flush(
        store: CampaignStore) -> None:
    campaign = await launch(store, population=6, batch_size=3)
    a = await claim(store, "n1")
    b = await claim(store, "n2")
    with pytest.raises(InvalidInput):
        await store.record_outcomes(a.id, a.epoch, "n1", [
            out(a.recipients[0], campaign), out(b.recipients[0], campaign)])
    assert all(r.state == "pending" for r in await store.recipient_outcomes(campaign))


async def test_reservations_hold_a_batch_for_its_site(store: CampaignStore) -> None:
    await launch(store, population=3, batch_size=3)
    dead = await claim(store, "paris-node1")
    assert await store.reassign_batches("paris-node1", reserve_for="paris", hold_s=30) == 1
    assert await store.claim_batch("marseille-node1", LEASE, site="marseille") is None
    assert await store.lift_reservations("marseille") == 0
    assert await store.lift_reservations("paris") == 1
    taken = await claim(store, "marseille-node1", "marseille")
    assert (taken.id, taken.epoch) == (dead.id, dead.epoch + 1)
    await store.reassign_batches("marseille-node1", reserve_for="marseille", hold_s=30)
    own = await claim(store, "marseille-node2", "marseille")
    assert own.id == dead.id
    await store.reassign_batches("marseille-node2", reserve_for="marseille", hold_s=30)
    assert (await claim(store, "tool", None)).id == dead.id  # no site: takes reserved ones
    with pytest.raises(InvalidInput) as err:
        await store.reassign_batches("tool", reserve_for="paris", hold_s=3600)
    assert err.value.field == "hold_s"


async def test_completion_needs_every_recipient_final_unless_cancelled(
        store: CampaignStore) -> None:
    campaign = await launch(store, population=6, batch_size=3)
    a = await claim(store, "n1")
    with pytest.raises(InvalidInput) as err:
        await store.finish_batch(a.id, a.epoch, "n1")
    assert err.value.field == "batch_id"
    await finish_all(store, a)
    await store.finish_batch(a.id, a.epoch, "n1")  # again, same claim: a no-op
    assert (await store.campaign_summary(campaign)).state == "running"
    b = await claim(store, "n2")
    await finish_all(store, b)
    summary = await store.campaign_summary(campaign)
    assert (summary.state, summary.delivered, summary.pending) == ("completed", 6, 0)
    assert summary.completed_at is not None
    assert await store.claim_batch("n3", LEASE) is None
    other = await launch(store, population=3, batch_size=3, name="other")
    c = await claim(store, "n1")
    await store.set_campaign_state(other, "cancelled")
    await store.finish_batch(c.id, c.epoch, "n1")  # cancelled: pending ones may stay
    with pytest.raises(InvalidInput):
        await store.set_campaign_state(other, "running")


async def test_release_gives_the_batch_back_to_anyone(store: CampaignStore) -> None:
    await launch(store, population=3, batch_size=3)
    a = await claim(store, "paris-node1")
    await store.release_batch(a.id, a.epoch, "paris-node1")
    assert await store.batches_in_flight() == {}
    b = await claim(store, "marseille-node1", "marseille")
    assert (b.id, b.epoch) == (a.id, a.epoch + 1)


async def test_held_by_names_a_nodes_batches_with_their_epochs(store: CampaignStore) -> None:
    await launch(store, population=6, batch_size=2)
    a = await claim(store, "paris-node1")
    b = await claim(store, "paris-node1")
    c = await claim(store, "marseille-node1", "marseille")
    assert await store.held_by("paris-node1") == {a.id: a.epoch, b.id: b.epoch}
    assert await store.held_by("marseille-node1") == {c.id: c.epoch}
    await store.release_batch(a.id, a.epoch, "paris-node1")
    assert await store.held_by("paris-node1") == {b.id: b.epoch}
    assert await store.held_by("nobody") == {}
    with pytest.raises(InvalidInput, match="node"):
        await store.held_by(" ")


async def test_events_are_listed_newest_first(store: CampaignStore) -> None:
    first = await store.record_event("watchdog.move", "moved 2 batches", "paris-node2",
                                     "paris", None, {"moved": {"paris-node1": 2}})
    second = await store.record_event("operator.note", "drill", "cli", "paris")
    assert second > first
    # The database's ledger opens with the migration's own entry; the fake's starts empty.
    events = [e for e in await store.list_events(limit=10) if e.kind != "ledger.opened"]
    assert [e.id for e in events] == [second, first]
    assert events[1].details == {"moved": {"paris-node1": 2}} and events[1].kind == \
        "watchdog.move"
    assert [e.id for e in await store.list_events(limit=1)] == [second]
    with pytest.raises(InvalidInput) as err:
        await store.record_event("Bad Kind!", "x", "n", "paris")
    assert err.value.field == "kind"
    with pytest.raises(InvalidInput) as err:
        await store.record_event("operator.note", "x", "", "paris")
    assert err.value.field == "node"


async def test_launch_validation_and_generated_recipients(store: CampaignStore) -> None:
    campaign = await launch(store, population=3, batch_size=2)
    b = await claim(store, "n1")
    first = b.recipients[0]
    assert (first.name, first.phone, first.email, first.language) == (
        "Test 000001", "+336390000001", "test-1@example.invalid", "fr")
    page = await store.recipient_outcomes(campaign, limit=2, offset=1)
    assert [r.name for r in page] == ["Test 000002", "Test 000003"]
    for kwargs, field in (({"population": 0}, "population"), ({"group": "nobody"}, "group"),
                          ({"population": 3, "batch_size": 0}, "batch_size")):
        with pytest.raises(InvalidInput) as err:
            await store.launch_campaign("flood", "op", **kwargs)  # type: ignore[arg-type]
        assert err.value.field == field
    with pytest.raises(NotFound):
        await store.launch_campaign("no-such", "op", population=1)
    with pytest.raises(InvalidInput) as err:
        await store.claim_batch("n1", 0)
    assert err.value.field == "lease_s"
