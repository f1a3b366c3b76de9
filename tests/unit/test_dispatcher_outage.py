"""The dispatcher while the store is away (a PostgreSQL failover as a node sees it), against the
in-memory store and scripted carriers: it goes on sending what it holds and its reserve claimed
ahead, journals the outcomes and records them once the store answers; the reserve is bounded;
a batch is never sent from past its lease (nobody else can hold it meanwhile); self-fencing
still stops it; a more urgent campaign starts before the reserve; draining gives it back."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster.coordination.base import MemberInfo
from nodes.carriers.base import Message, SendResult
from nodes.dispatcher import Dispatcher, DispatcherConfig, Freshness
from nodes.journal import FileJournal
from nodes.membership import FreshMembership
from replication.store_api import CampaignStore, ChannelStep, ClaimedBatch, ScenarioIn
from tests.fakes.carriers import FakeCarrier, Script, SubmittingCarrier, both_kinds
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator
from tests.fakes.memory_store import MemoryStore
from tests.fakes.partition import PartitionedView

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

SMS = ChannelStep("sms", {"fr": "Alerte"}, retries=0)


def recipient_of(m: Message) -> int:
    return int(m.reference.split(":")[1])


def campaign_of(m: Message) -> int:
    return int(m.reference.split(":")[0])


class Timed(FakeCarrier):
    """A fake carrier that notes when each message was submitted (monotonic clock)."""

    def __init__(self, name: str, delay_s: float = 0.05,
                 decide: Callable[[Message], Script] | None = None) -> None:
        super().__init__(name, "sms", decide=decide or (lambda m: Script(delay_s=delay_s)))
        self.times: list[float] = []

    def _send_now(self, message: Message) -> SendResult:
        self.times.append(time.monotonic())
        return super()._send_now(message)


class TimedSubmitting(Timed, SubmittingCarrier):
    """``Timed`` with ``submit``, as the SMPP adapter."""


_carriers = both_kinds(Timed=TimedSubmitting)


def make(store: CampaignStore, node: str, carrier: FakeCarrier, journal: FileJournal | None = None,
         freshness: Freshness | None = None, **config: float) -> Dispatcher:
    settings: dict[str, float] = {"idle_poll_s": 0.01, "lease_s": 5.0, "max_batches": 2,
                                  "claim_ahead_s": 5.0, "claim_ahead_max": 4, **config}
    return Dispatcher(store, {"sms": carrier},
                      DispatcherConfig(node=node, site=node.split("-")[0], **settings),  # type: ignore[arg-type]
                      journal=journal, freshness=freshness)


async def until(cond: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def quiet(count: Callable[[], int], for_s: float, timeout: float = 10.0) -> None:
    """Until ``count()`` has not changed for ``for_s``."""
    async with asyncio.timeout(timeout):
        last, since = count(), time.monotonic()
        while time.monotonic() - since < for_s:
            await asyncio.sleep(0.01)
            if count() != last:
                last, since = count(), time.monotonic()


async def test_a_node_sends_what_it_holds_and_its_reserve_through_an_outage(
        tmp_path: Path) -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms", (SMS,)))
    campaign = await store.launch_campaign("sms", "op", population=600, batch_size=20)
    journal, _ = FileJournal.open(tmp_path, "paris-node1")
    sms = Timed("sms-paris")
    d = make(store, "paris-node1", sms, journal)
    await sms.start(d.on_receipt, d.on_ack)
    task = asyncio.create_task(d.run())
    await until(lambda: d.reserve == 4)
    held = {b for b, n in (await store.batches_in_flight()).items()}
    assert held == {"paris-node1"}
    in_flight = await store.batches_in_flight_by_campaign()
    # 2 sending + 4 claimed ahead, and (on a loaded machine) up to 2 whose close is under way
    assert 6 <= in_flight[campaign]["paris-node1"] <= 8
    store.unavailable = True  # PostgreSQL fails over: nothing can be claimed or recorded
    outage = time.monotonic()
    sent_before, reserve, claimed = len(sms.sent), d.reserve, d.stats.batches_claimed
    running = in_flight[campaign]["paris-node1"] - reserve
    assert reserve >= 3
    # the whole reserve goes out during the outage, then it stops: nothing more is held (waits
    # on what happens, not on the clock: a loaded machine only makes it slower)
    await until(lambda: d.reserve == 0)
    await quiet(lambda: len(sms.sent), 0.3)
    during = sms.sent[sent_before:]
    assert reserve * 20 <= len(during) <= (reserve + running) * 20
    assert d.stats.batches_claimed == claimed
    assert journal.unsettled >= 4 * 20  # waiting in the journal, fsync'd
    print(f"outage: {len(during)} sent in {max(sms.times) - outage:.2f} s from what was held")
    store.unavailable = False
    await until(lambda: journal.unsettled == 0 and not store.unavailable)
    async with asyncio.timeout(10):
        while (await store.campaign_summary(campaign)).pending:
            await asyncio.sleep(0.02)
    d.request_stop("drain")
    await task
    summary = await store.campaign_summary(campaign)
    assert (summary.delivered, summary.state) == (600, "completed")
    counts = Counter(m.reference for m in sms.sent)
    assert len(counts) == 600 and max(counts.values()) == 1  # each sent once, recorded once


async def test_with_the_store_away_the_reserve_starts_only_on_fresh_proof_of_membership(
        tmp_path: Path) -> None:
    """A PostgreSQL failover (the coordination service still answers): the reserve goes out.
    The site cut off (the store and the coordination service both away): at most one more
    round of batches starts (those that took a slot before a write had failed), the rest of
    the reserve waits, and nothing is sent twice once both come back."""
    sent: dict[str, int] = {}
    for coordination in ("answers", "cut"):
        server = FakeCoordinationServer()
        coordinator = FakeCoordinator(server, "paris-node1", ttl=60.0)
        await coordinator.join(MemberInfo("paris-node1", "paris", "h", ("sms",), 4, "u"))
        fresh = FreshMembership(coordinator, "paris-node1", "paris")
        store = MemoryStore()
        await store.create_scenario(ScenarioIn("sms", (SMS,)))
        campaign = await store.launch_campaign("sms", "op", population=600, batch_size=20)
        journal, _ = FileJournal.open(tmp_path / coordination, "paris-node1")
        sms = Timed("sms-paris")
        d = make(store, "paris-node1", sms, journal, freshness=fresh, claim_ahead_max=6)
        await sms.start(d.on_receipt, d.on_ack)
        task = asyncio.create_task(d.run())
        await until(lambda d=d: d.reserve == 6)
        server.advance(1.0)  # renewed a second ago: a member (ttl 60 s), not a fresh proof
        server.reachable = coordination == "answers"
        store.unavailable = True
        before, reserve = len(sms.sent), d.reserve
        await quiet(lambda sms=sms: len(sms.sent), 0.5)
        sent[coordination] = len(sms.sent) - before
        if coordination == "answers":
            assert d.reserve == 0 and sent[coordination] >= reserve * 20
        else:
            # running + one round of max_batches, not the whole reserve (which the batches
            # stuck waiting for a proof no longer count in: they hold a send slot)
            assert sent[coordination] <= (2 + 2) * 20 < reserve * 20
            assert fresh.refused > 0
        server.reachable, store.unavailable = True, False
        async with asyncio.timeout(10):
            while (await store.campaign_summary(campaign)).pending:
                await asyncio.sleep(0.02)
        d.request_stop("drain")
        await task
        counts = Counter(m.reference for m in sms.sent)
        assert len(counts) == 600 and max(counts.values()) == 1, coordination
    print(f"sent while the store was away: {sent}")
    assert sent["cut"] < sent["answers"]


async def test_the_reserve_is_bounded_and_none_without_claim_ahead() -> None:
    for ahead_s, ahead_max, bound in ((5.0, 3, 2 + 3), (0.0, 50, 2)):
        store = PeakStore()
        await store.create_scenario(ScenarioIn("sms", (SMS,)))
        campaign = await store.launch_campaign("sms", "op", population=800, batch_size=10)
        sms = Timed("sms-paris", delay_s=0.02)
        d = make(store, "paris-node1", sms, claim_ahead_s=ahead_s, claim_ahead_max=ahead_max)
        store.held = lambda d=d: d.running_batches
        await sms.start(d.on_receipt, d.on_ack)
        task = asyncio.create_task(d.run())
        async with asyncio.timeout(20):
            while (await store.campaign_summary(campaign)).pending:
                await asyncio.sleep(0.01)
        d.request_stop("drain")
        await task
        assert store.peak == bound, (ahead_s, ahead_max)


class PeakStore(MemoryStore):
    """The most batches the dispatcher held at once (sending or in reserve), counted at each
    claim: sampling missed the peak on a loaded machine, and the store's own count includes
    batches still closing (their outcomes flushing), which the bound does not."""

    peak = 0
    held: Callable[[], int] = staticmethod(lambda: 0)

    async def claim_batch(self, node: str, lease_s: float,
                          site: str | None = None) -> ClaimedBatch | None:
        got = await super().claim_batch(node, lease_s, site)
        self.peak = max(self.peak, self.held() + (got is not None))
        return got


async def test_through_a_long_outage_a_batch_is_never_sent_from_by_two_nodes(
        tmp_path: Path) -> None:
    store = MemoryStore()
    step = ChannelStep("sms", {"fr": "x"}, retries=100_000, retry_interval_s=0.05)
    await store.create_scenario(ScenarioIn("stubborn", (step,)))
    await store.launch_campaign("stubborn", "op", population=5, batch_size=5)
    a_view, b_view = PartitionedView(store), PartitionedView(store)
    def refusing(m: Message) -> Script:
        return Script(accept=False, retryable=True)

    a_sms, b_sms = Timed("sms-a", decide=refusing), Timed("sms-b", decide=refusing)
    journal, _ = FileJournal.open(tmp_path, "paris-node1")
    a = make(a_view, "paris-node1", a_sms, journal, lease_s=3.0, max_batches=1,  # type: ignore[arg-type]
             claim_ahead_s=0.0)
    b = make(b_view, "marseille-node1", b_sms, lease_s=3.0, max_batches=1,  # type: ignore[arg-type]
             claim_ahead_s=0.0)
    for d, c in ((a, a_sms), (b, b_sms)):
        await c.start(d.on_receipt, d.on_ack)
    ta = asyncio.create_task(a.run())
    await until(lambda: len(a_sms.sent) >= 5)
    tb = asyncio.create_task(b.run())
    a_view.cut = True  # the store is away for A far longer than the lease
    await until(lambda: len(b_sms.sent) >= 5, timeout=8)
    assert max(a_sms.times) < min(b_sms.times)  # A stopped before B could take the batch
    # A stopped while its lease still held: lease (3 s) - safety (1 s) from its last renewal
    assert min(b_sms.times) - max(a_sms.times) >= 0.9
    for d in (a, b):
        d.request_stop("now")
    a_view.cut = False
    await asyncio.gather(ta, tb)
    assert await store.fencing_rejections() >= 1  # A's late writes were refused, and counted


async def test_a_node_that_loses_its_membership_stops_sending_outage_or_not() -> None:
    class Gate:
        open = True

        def may_dispatch(self) -> bool:
            return self.open

    store = MemoryStore()
    step = ChannelStep("sms", {"fr": "x"}, retries=100_000, retry_interval_s=0.02)
    await store.create_scenario(ScenarioIn("stubborn", (step,)))
    await store.launch_campaign("stubborn", "op", population=40, batch_size=10)
    sms = Timed("sms", decide=lambda m: Script(accept=False, retryable=True))
    gate = Gate()
    d = Dispatcher(store, {"sms": sms}, DispatcherConfig(
        "paris-node1", "paris", max_batches=2, idle_poll_s=0.01, claim_ahead_s=5.0,
        claim_ahead_max=2), gate=gate)
    await sms.start(d.on_receipt, d.on_ack)
    task = asyncio.create_task(d.run())
    await until(lambda: len(sms.sent) >= 20)
    store.unavailable = True
    await asyncio.sleep(0.2)
    gate.open = False  # membership in doubt during the outage
    closed = time.monotonic()
    await asyncio.sleep(0.5)
    assert not [t for t in sms.times if t > closed + 0.03]  # nothing after an attempt under way
    d.request_stop("now")
    store.unavailable = False
    await task


async def test_a_more_urgent_campaign_starts_before_the_reserve() -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("routine", (SMS,), priority=9))
    await store.create_scenario(ScenarioIn("urgent", (SMS,), priority=1))
    routine = await store.launch_campaign("routine", "op", population=200, batch_size=10)
    sms = Timed("sms", delay_s=0.1)
    d = make(store, "paris-node1", sms, max_batches=1, claim_ahead_max=4, claim_ahead_s=10.0)
    await sms.start(d.on_receipt, d.on_ack)
    task = asyncio.create_task(d.run())
    await until(lambda: d.reserve == 4)
    urgent = await store.launch_campaign("urgent", "op", population=10, batch_size=10)
    async with asyncio.timeout(10):
        while (await store.campaign_summary(urgent)).pending:
            await asyncio.sleep(0.01)
    order = [campaign_of(m) for m in sms.sent]
    first_urgent = order.index(urgent)
    # routine batches sent before it: those under way or starting as it was claimed, not the
    # reserve of 4 held at its launch
    assert order[:first_urgent].count(routine) <= 3 * 10
    d.request_stop("now")
    await task


async def test_a_drained_node_gives_its_reserve_back_at_once() -> None:
    class Switch:
        open = True

        def may_claim(self) -> bool:
            return self.open

    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms", (SMS,)))
    campaign = await store.launch_campaign("sms", "op", population=300, batch_size=10)
    sms = Timed("sms", delay_s=0.5)
    switch = Switch()
    d = Dispatcher(store, {"sms": sms}, DispatcherConfig(
        "paris-node1", "paris", max_batches=1, idle_poll_s=0.01, claim_ahead_s=30.0,
        claim_ahead_max=5), claim_gate=switch)
    await sms.start(d.on_receipt, d.on_ack)
    task = asyncio.create_task(d.run())
    await until(lambda: d.reserve == 5, timeout=10)
    switch.open = False
    await until(lambda: d.reserve == 0, timeout=1)
    await asyncio.sleep(0.05)
    assert (await store.batches_in_flight()).get("paris-node1", 0) <= 1  # only the one sending
    d.request_stop("drain")
    await task
    assert (await store.campaign_summary(campaign)).pending > 0
    assert d.stats.batches_released >= 5


async def test_a_batch_whose_task_never_ran_is_released_not_leaked() -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms", (SMS,)))
    campaign = await store.launch_campaign("sms", "op", population=10, batch_size=10)
    view = PartitionedView(store)
    sms = Timed("sms")
    d = make(view, "paris-node1", sms, max_batches=1)  # type: ignore[arg-type]
    await sms.start(d.on_receipt, d.on_ack)
    # stopped at once as the claim returns: the batch's task is cancelled before it ever ran
    view.after = lambda name: d.request_stop("now") if name == "claim_batch" else None
    await asyncio.wait_for(d.run(), 5.0)
    assert d.stats.batches_claimed == 1 and d.stats.batches_released == 1
    # released, not left claimed until its lease runs out
    assert await store.batches_in_flight() == {}
    assert sms.sent == [] and (await store.campaign_summary(campaign)).pending == 10


async def test_a_claim_whose_answer_was_lost_is_released_not_left_to_its_lease() -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms", (SMS,)))
    campaign = await store.launch_campaign("sms", "op", population=30, batch_size=10)
    view = PartitionedView(store)
    view.lose_answer = {"claim_batch"}  # the first claim commits, its answer is lost
    sms = Timed("sms")
    d = make(view, "paris-node1", sms, lease_s=30.0)  # type: ignore[arg-type]
    await sms.start(d.on_receipt, d.on_ack)
    task = asyncio.create_task(d.run())
    async with asyncio.timeout(5):  # not the 30 s the lost claim's lease would hold it
        while (await store.campaign_summary(campaign)).pending:
            await asyncio.sleep(0.02)
    d.request_stop("drain")
    await task
    assert d.stats.batches_claimed == 3 and d.stats.batches_released == 1
    assert len(sms.sent) == 30 == len({m.reference for m in sms.sent})


async def test_a_reserve_held_when_the_queue_runs_dry_goes_to_a_node_with_a_free_slot() -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms", (SMS,)))
    campaign = await store.launch_campaign("sms", "op", population=5, batch_size=1)
    slow = Timed("sms-paris", delay_s=1.0)
    a = make(store, "paris-node1", slow, max_batches=1, claim_ahead_s=30.0, claim_ahead_max=4)
    await slow.start(a.on_receipt, a.on_ack)
    first = asyncio.create_task(a.run())
    await until(lambda: a.reserve >= 3, timeout=5)  # it holds the whole campaign: queue dry
    idle = Timed("sms-marseille", delay_s=0.01)
    b = make(store, "marseille-node1", idle, max_batches=1, claim_ahead_s=0.0)
    await idle.start(b.on_receipt, b.on_ack)
    second = asyncio.create_task(b.run())
    async with asyncio.timeout(10):
        while (await store.campaign_summary(campaign)).pending:
            await asyncio.sleep(0.02)
    a.request_stop("drain")
    b.request_stop("drain")
    await asyncio.gather(first, second)
    # the node with a free slot sent the end of the campaign, not the reserve's holder alone
    assert a.stats.batches_released >= 1 and len(idle.sent) >= 1
    refs = [m.reference for m in slow.sent + idle.sent]
    assert len(refs) == len(set(refs)) == 5  # each sent once


@pytest.mark.parametrize("given_back", [True, False])
async def test_a_reserve_given_back_is_not_taken_into_another_reserve(given_back: bool) -> None:
    """A busy node that claims a batch another node gave back claims only for free slots (the
    queue runs dry); fresh batches it takes into its reserve (shown: the test sees hoarding)."""
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms", (SMS,)))
    await store.launch_campaign("sms", "op", population=5, batch_size=1)
    if given_back:  # another node claimed the whole campaign and gave it back
        for _ in range(5):
            b = await store.claim_batch("marseille-node1", 30.0, site="marseille")
            assert b is not None
            await store.release_batch(b.id, b.epoch, b.node)
    slow = Timed("sms", delay_s=2.0)
    d = make(store, "paris-node1", slow, max_batches=1, claim_ahead_s=30.0, claim_ahead_max=4)
    d.ahead.wants_more = lambda *_: True  # type: ignore[method-assign]  # a full rate: wants
    await slow.start(d.on_receipt, d.on_ack)
    task = asyncio.create_task(d.run())
    await until(lambda: len(slow.sent) == 1)
    if given_back:
        await asyncio.sleep(0.2)  # 20 claim polls: time to take the rest, were it to
        assert d.reserve == 0
    else:
        await until(lambda: d.reserve == 4, timeout=2)
    d.request_stop("now")
    await task
