"""Outcomes through the journal against the in-memory store: kept through an outage and recorded
once it ends; refused by fencing when the batch moved meanwhile (counted, settled, nothing
recorded); flushed by the next life of a node killed with them unflushed, or refused when its
batch had moved, and then sent again with the same references by the new owner; flushed twice
(a settlement lost with the machine) without a second record."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nodes.journal import FileJournal, read_journal
from nodes.journal_flush import flush_journal
from nodes.outcomes import OutcomeBuffer
from replication.store_api import ChannelStep, ClaimedBatch, Outcome, ScenarioIn
from tests.fakes.journal import SlowJournal
from tests.fakes.memory_store import MemoryStore
from tests.fakes.partition import PartitionedView

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]
SMS = ChannelStep("sms", {"fr": "Alerte"}, retries=0)


async def campaign_with_claim(store: MemoryStore, node: str = "paris-node1",
                              population: int = 5) -> tuple[int, ClaimedBatch]:
    await store.create_scenario(ScenarioIn("sms", (SMS,)))
    campaign = await store.launch_campaign("sms", "op", population=population,
                                           batch_size=population)
    batch = await store.claim_batch(node, 30.0, site="paris")
    assert batch is not None
    return campaign, batch


def delivered(batch: ClaimedBatch, site: str = "paris") -> list[Outcome]:
    return [Outcome(recipient_id=r.id, channel="sms", carrier=f"smpp-{site}",
                    reference=f"{r.campaign_id}:{r.id}:sms:0.0", state="delivered", step=0,
                    attempt=0, final=True, site=site, carrier_message_id=f"{site}-{r.id}",
                    at=datetime.now(UTC)) for r in batch.recipients]


async def journaled_then_killed(store: MemoryStore, batch: ClaimedBatch, folder: Path) -> None:
    """A node's life that journals the batch's outcomes during an outage and dies (SIGKILL:
    nothing more is written, the journal is not closed)."""
    journal, _ = FileJournal.open(folder, batch.node)
    buffer = OutcomeBuffer(store, batch.id, batch.epoch, batch.node, journal=journal)
    store.unavailable = True
    for o in delivered(batch):
        buffer.add(o)
    await buffer.flush()
    assert buffer.pending == len(batch.recipients) and journal.unsettled == buffer.pending
    store.unavailable = False


async def test_outcomes_wait_in_the_journal_through_an_outage_then_are_recorded(
        tmp_path: Path) -> None:
    store = MemoryStore()
    campaign, batch = await campaign_with_claim(store)
    journal, _ = FileJournal.open(tmp_path, batch.node)
    buffer = OutcomeBuffer(store, batch.id, batch.epoch, batch.node, journal=journal)
    store.unavailable = True
    for o in delivered(batch):
        buffer.add(o)
    await buffer.flush()
    await buffer.flush()
    assert buffer.write_errors == 2 and journal.unsettled == 5
    on_disk = read_journal(tmp_path / f"{batch.node}.journal", batch.node)
    assert [len(g.outcomes) for g in on_disk.groups.values()] == [5]  # safe before the store
    store.unavailable = False
    assert await buffer.close(None)
    assert (await store.campaign_summary(campaign)).delivered == 5
    assert journal.unsettled == 0
    await journal.close()
    assert FileJournal.open(tmp_path, batch.node)[1] == []


async def test_outcomes_are_journaled_while_a_store_write_hangs(tmp_path: Path) -> None:
    store = MemoryStore()
    campaign, batch = await campaign_with_claim(store, population=10)
    view = PartitionedView(store)
    journal, _ = FileJournal.open(tmp_path, batch.node)
    buffer = OutcomeBuffer(view, batch.id, batch.epoch, batch.node,  # type: ignore[arg-type]
                           journal=journal)
    outcomes = delivered(batch)
    view.stalled = True  # the pool waits for a server that is not there
    for o in outcomes[:5]:
        buffer.add(o)
    hung = asyncio.create_task(buffer.flush())
    await asyncio.sleep(0.05)
    for o in outcomes[5:]:
        buffer.add(o)
    await asyncio.wait_for(buffer.flush(), 1.0)  # does not wait behind the hung write
    assert journal.unsettled == 10 and not hung.done()
    view.stalled = False
    assert await buffer.close(None)
    await hung
    assert (await store.campaign_summary(campaign)).delivered == 10
    assert journal.unsettled == 0 and buffer.written == 10


async def test_rows_journaled_while_a_write_lands_are_written_too() -> None:
    store = MemoryStore()
    campaign, batch = await campaign_with_claim(store, population=10)
    view = PartitionedView(store)
    journal = SlowJournal(delay_s=0.2)
    buffer = OutcomeBuffer(view, batch.id, batch.epoch, batch.node,  # type: ignore[arg-type]
                           journal=journal)
    outcomes = delivered(batch)
    view.stalled = True
    for o in outcomes[:5]:
        buffer.add(o)
    writing = asyncio.create_task(buffer.flush())  # journals, then its write hangs
    await asyncio.sleep(0.3)
    for o in outcomes[5:]:
        buffer.add(o)
    journaling = asyncio.create_task(buffer.flush())  # journals (0.2 s) while...
    await asyncio.sleep(0.05)
    view.stalled = False  # ...the first write lands and is settled
    await asyncio.gather(writing, journaling)
    assert await buffer.close(None)
    assert (await store.campaign_summary(campaign)).delivered == 10
    assert journal.unsettled == 0


async def test_close_says_done_only_once_everything_is_recorded() -> None:
    for round_ in range(20):
        store = MemoryStore()
        campaign, batch = await campaign_with_claim(store, population=20)
        journal = SlowJournal(delay_s=0.03)
        buffer = OutcomeBuffer(store, batch.id, batch.epoch, batch.node, journal=journal,
                               max_delay_s=0.01)
        outcomes = delivered(batch)
        store.unavailable = True
        for i, o in enumerate(outcomes):
            buffer.add(o)
            await asyncio.sleep(0.004 * (i % 3))
        closing = asyncio.create_task(buffer.close(None))
        await asyncio.sleep(0.02 * (round_ % 5))
        store.unavailable = False
        assert await closing
        summary = await store.campaign_summary(campaign)
        assert summary.delivered == 20, (round_, summary.delivered, buffer.pending)
        assert journal.unsettled == 0


async def test_a_flush_refused_by_fencing_is_counted_settled_and_records_nothing(
        tmp_path: Path) -> None:
    store = MemoryStore()
    campaign, batch = await campaign_with_claim(store)
    journal, _ = FileJournal.open(tmp_path, batch.node)
    refusals: list[Exception] = []
    buffer = OutcomeBuffer(store, batch.id, batch.epoch, batch.node, journal=journal,
                           on_stale=refusals.append)
    store.unavailable = True
    for o in delivered(batch):
        buffer.add(o)
    await buffer.flush()
    store.unavailable = False
    assert await store.reassign_batches(batch.node) == 1  # the watchdog moved it meanwhile
    assert await buffer.close(None)
    assert buffer.stale is not None and len(refusals) == 1
    assert await store.fencing_rejections() == 1
    assert (await store.campaign_summary(campaign)).pending == 5
    assert journal.unsettled == 0


async def test_a_restarted_node_flushes_its_journal_before_its_batch_moves(
        tmp_path: Path) -> None:
    store = MemoryStore()
    campaign, batch = await campaign_with_claim(store)
    await journaled_then_killed(store, batch, tmp_path)
    journal, groups = FileJournal.open(tmp_path, batch.node)  # the next life
    report = await flush_journal(store, journal, groups, batch.node, "paris")
    assert (report.recorded, report.refused) == (5, 0)
    assert (await store.campaign_summary(campaign)).delivered == 5
    await store.reassign_batches(batch.node)  # then the watchdog moves it
    taken = await store.claim_batch("paris-node2", 30.0, site="paris")
    assert taken is not None and taken.recipients == ()  # nothing to send again
    await journal.close()
    assert FileJournal.open(tmp_path, batch.node)[1] == []


async def test_a_journal_flushed_after_the_move_is_refused_and_the_new_owner_resends(
        tmp_path: Path) -> None:
    store = MemoryStore()
    campaign, batch = await campaign_with_claim(store)
    await journaled_then_killed(store, batch, tmp_path)
    await store.reassign_batches(batch.node)  # the watchdog moved it before the restart
    taken = await store.claim_batch("paris-node2", 30.0, site="paris")
    assert taken is not None and len(taken.recipients) == 5
    journal, groups = FileJournal.open(tmp_path, batch.node)
    report = await flush_journal(store, journal, groups, batch.node, "paris")
    assert (report.recorded, report.refused, report.refused_writes) == (0, 5, 1)
    assert await store.fencing_rejections() == 1
    # the new owner sends them again with the same references: recorded once, under its claim
    again = delivered(taken)
    assert [o.reference for o in again] == [o.reference for o in delivered(batch)]
    await store.record_outcomes(taken.id, taken.epoch, taken.node, again)
    await store.finish_batch(taken.id, taken.epoch, taken.node)
    summary = await store.campaign_summary(campaign)
    assert (summary.delivered, summary.pending, summary.state) == (5, 0, "completed")
    assert journal.unsettled == 0


async def test_a_group_flushed_again_after_a_lost_settlement_is_not_recorded_twice(
        tmp_path: Path) -> None:
    store = MemoryStore()
    campaign, batch = await campaign_with_claim(store)
    journal, _ = FileJournal.open(tmp_path, batch.node)
    first = delivered(batch)
    await journal.append(batch.id, batch.epoch, first)
    await store.record_outcomes(batch.id, batch.epoch, batch.node, first)  # recorded, then
    del journal  # the machine died before the settlement was written
    journal, groups = FileJournal.open(tmp_path, batch.node)
    assert len(groups) == 1
    report = await flush_journal(store, journal, groups, batch.node, "paris")
    assert report.recorded == 5 and await store.fencing_rejections() == 0
    outcomes = await store.recipient_outcomes(campaign)
    assert sorted(o.reference or "" for o in outcomes) == sorted(o.reference for o in first)
    assert {o.state for o in outcomes} == {"delivered"}
