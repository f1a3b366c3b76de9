"""The streaming launch's contract (migrations/0008), on the fake and on PostgreSQL: the first
chunk is claimable before the rest is written; a campaign does not complete while its launch
is writing; a failed launch keeps what was written, ends 'failed' (never 'completed'), and its
writer's next chunk is refused."""

from __future__ import annotations

import pytest

from replication.store_api import CampaignStore, InvalidInput, LaunchCursor, LaunchStopped
from tests.contract.kit import claim, finish_all, launch

pytestmark = pytest.mark.asyncio


async def _writing(store: CampaignStore, population: int) -> LaunchCursor:
    """A launch of ``population`` by paris-node1, its first batch of 3 written."""
    await launch(store, population=1, batch_size=1, name="seed")  # the scenario "seed"
    await finish_all(store, await claim(store, "marseille-node1", "marseille"))
    return await store.start_launch("seed", "op", node="paris-node1", population=population,
                                    batch_size=3, first=3)


async def test_the_first_chunk_is_claimable_and_completion_waits_for_the_launch(
        store: CampaignStore) -> None:
    cursor = await _writing(store, 7)
    first = await claim(store, "marseille-node1", "marseille")
    assert first.campaign_id == cursor.campaign_id and len(first.recipients) == 3
    await finish_all(store, first)
    s = await store.campaign_summary(cursor.campaign_id)
    assert (s.state, s.launch_state, s.recipients, s.requested) == ("running", "writing", 3, 7)
    cursor = await store.continue_launch(cursor, 3)  # whole batches: 3 more
    assert (cursor.written, cursor.done) == (6, False)
    cursor = await store.continue_launch(cursor, 3)
    assert (cursor.written, cursor.done) == (7, True)
    for _ in range(2):
        await finish_all(store, await claim(store, "paris-node2"))
    s = await store.campaign_summary(cursor.campaign_id)
    assert (s.state, s.launch_state, s.recipients, s.delivered) == ("completed", "written", 7, 7)


async def test_a_failed_launch_sends_what_was_written_and_ends_failed(
        store: CampaignStore) -> None:
    cursor = await _writing(store, 9)
    held = await claim(store, "marseille-node1", "marseille")
    # the writer died: not a member any more; the watchdog fails its launch
    stalled = await store.fail_stalled_launches(["marseille-node1"], 0.0, 60.0)
    assert [(x.campaign_id, x.node, x.written, x.requested) for x in stalled] == \
        [(cursor.campaign_id, "paris-node1", 3, 9)]
    assert await store.fail_stalled_launches(["marseille-node1"], 0.0, 60.0) == []  # once
    with pytest.raises(LaunchStopped):  # a writer that was only slow adds nothing now
        await store.continue_launch(cursor, 3)
    s = await store.campaign_summary(cursor.campaign_id)
    assert (s.state, s.launch_state, s.recipients) == ("running", "failed", 3)
    await finish_all(store, held)  # what was written is still sent, then the campaign ends
    s = await store.campaign_summary(cursor.campaign_id)
    assert (s.state, s.delivered, s.pending, s.requested) == ("failed", 3, 0, 9)
    assert s.completed_at is not None and s.launch_error


async def test_a_live_writer_is_not_failed_and_may_fail_its_own_launch(
        store: CampaignStore) -> None:
    cursor = await _writing(store, 9)
    assert await store.fail_stalled_launches(["paris-node1"], 0.0, 60.0) == []
    assert not await store.fail_launch(cursor.campaign_id, "paris-node2", "not its writer")
    assert await store.fail_launch(cursor.campaign_id, "paris-node1", "chunk refused")
    s = await store.campaign_summary(cursor.campaign_id)
    assert (s.launch_state, s.launch_error) == ("failed", "chunk refused")


async def test_a_launch_without_a_batch_size_gets_larger_batches_past_200000(
        store: CampaignStore) -> None:
    """No batch size named: 100 up to 200,000 recipients, then about 2,000 batches of at most
    500 (only the first chunk is written here: nothing is sent)."""
    await launch(store, population=1, batch_size=1, name="seed")
    await finish_all(store, await claim(store, "marseille-node1", "marseille"))
    sizes = {}
    for population in (50_000, 1_000_000):
        cursor = await store.start_launch("seed", "op", node="paris-node1",
                                          population=population, first=1000)
        sizes[population] = cursor.batch_size
        held = await claim(store, "paris-node2")
        assert held.campaign_id == cursor.campaign_id
        assert len(held.recipients) == cursor.batch_size  # the batches written are that size
        await store.set_campaign_state(cursor.campaign_id, "cancelled")
    assert sizes == {50_000: 100, 1_000_000: 500}
    named = await store.start_launch("seed", "op", node="paris-node1", population=1_000_000,
                                     batch_size=100, first=1000)
    assert named.batch_size == 100  # a size named is kept


@pytest.mark.parametrize("batch_size", [None, 100])
async def test_a_first_chunk_out_of_range_is_refused_by_name_and_nothing_is_stored(
        store: CampaignStore, batch_size: int | None) -> None:
    await launch(store, population=1, batch_size=1, name="seed")
    before = await store.list_campaigns()
    with pytest.raises(InvalidInput) as refused:
        await store.start_launch("seed", "op", node="paris-node1", population=10,
                                 batch_size=batch_size, first=0)
    assert refused.value.field == "chunk"
    assert await store.list_campaigns() == before
