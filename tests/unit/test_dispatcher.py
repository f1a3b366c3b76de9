"""The dispatcher against the in-memory store and scripted carriers: scenario steps, retries,
fallback, acknowledgements, fencing, drain and self-fencing."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

from nodes.carriers.base import Message
from nodes.dispatcher import Dispatcher, DispatcherConfig
from replication.store_api import ChannelStep, ScenarioIn
from tests.fakes.carriers import FakeCarrier, Script, SubmittingCarrier, both_kinds
from tests.fakes.clock import Clock
from tests.fakes.memory_store import MemoryStore

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]
_carriers = both_kinds(FakeCarrier=SubmittingCarrier)  # every test with both kinds

SMS = ChannelStep("sms", {"fr": "Alerte pour {name}", "en": "Alert for {name}"}, retries=0)
EMAIL = ChannelStep("email", {"fr": "Alerte"}, retries=0)
VOICE_ACK = ChannelStep("voice", {"fr": "Appuyez sur 1"}, retries=0, ack="dtmf",
                        ack_timeout_s=0.3)


class SmsWorksElsewhere:
    def available_elsewhere(self, channel: str) -> bool:
        return channel == "sms"


def recipient_of(m: Message) -> int:
    return int(m.reference.split(":")[1])


async def run_until_done(store: MemoryStore, campaign: int, *dispatchers: Dispatcher,
                         timeout: float = 10.0) -> None:
    tasks = [asyncio.create_task(d.run()) for d in dispatchers]
    try:
        async with asyncio.timeout(timeout):
            while (await store.campaign_summary(campaign)).pending:
                await asyncio.sleep(0.02)
    finally:
        for d in dispatchers:
            d.request_stop("drain")
        await asyncio.gather(*tasks)


def dispatcher(store: MemoryStore, node: str, *carriers: FakeCarrier,
               **config: float) -> Dispatcher:
    settings: dict[str, float] = {"idle_poll_s": 0.01, "lease_s": 5.0, **config}
    d = Dispatcher(store, {c.channel: c for c in carriers},
                   DispatcherConfig(node=node, site=node.split("-")[0],
                                    **settings))  # type: ignore[arg-type]
    return d


async def start(d: Dispatcher, *carriers: FakeCarrier) -> None:
    for c in carriers:
        await c.start(d.on_receipt, d.on_ack)


async def test_every_recipient_gets_one_final_outcome_and_each_reference_is_sent_once() -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms-only", (SMS,)))
    campaign = await store.launch_campaign("sms-only", "op", population=250, batch_size=40)
    sms = FakeCarrier("sms-paris", "sms")
    d = dispatcher(store, "paris-node1", sms)
    await start(d, sms)
    await run_until_done(store, campaign, d)
    summary = await store.campaign_summary(campaign)
    assert (summary.delivered, summary.failed, summary.pending) == (250, 0, 0)
    assert summary.state == "completed"
    assert summary.by_site == {"paris": 250}
    assert len(set(sms.references())) == len(sms.references()) == 250
    assert sms.sent[0].text.startswith("Alerte pour ")


async def test_sms_failure_falls_back_to_email() -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms-then-email", (SMS, EMAIL)))
    campaign = await store.launch_campaign("sms-then-email", "op", population=60, batch_size=25)
    sms = FakeCarrier("sms", "sms", decide=lambda m: Script(
        receipt="failed" if recipient_of(m) % 2 else "delivered"))
    email = FakeCarrier("mail", "email")
    d = dispatcher(store, "paris-node1", sms, email)
    await start(d, sms, email)
    await run_until_done(store, campaign, d)
    odd = {recipient_of(m) for m in sms.sent if recipient_of(m) % 2}
    assert odd and {recipient_of(m) for m in email.sent} == odd
    outcomes = await store.recipient_outcomes(campaign, limit=100)
    by_channel = Counter(o.channel for o in outcomes)
    assert by_channel == {"sms": 60 - len(odd), "email": len(odd)}
    assert all(o.state == "delivered" for o in outcomes)


async def test_a_recipient_no_channel_reaches_gets_a_final_failed_outcome() -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms-then-email", (SMS, EMAIL)))
    campaign = await store.launch_campaign("sms-then-email", "op", population=4, batch_size=4)
    sms = FakeCarrier("sms", "sms", decide=lambda m: Script(receipt="failed"))
    email = FakeCarrier("mail", "email", decide=lambda m: Script(accept=False))
    d = dispatcher(store, "paris-node1", sms, email)
    await start(d, sms, email)
    await run_until_done(store, campaign, d, timeout=5)
    summary = await store.campaign_summary(campaign)
    assert (summary.failed, summary.pending, summary.state) == (4, 0, "completed")


async def test_retryable_refusal_is_retried_with_a_new_attempt_reference() -> None:
    store = MemoryStore()
    step = ChannelStep("sms", {"fr": "x"}, retries=2, retry_interval_s=0.01)
    await store.create_scenario(ScenarioIn("retry", (step,)))
    campaign = await store.launch_campaign("retry", "op", population=5, batch_size=5)
    seen: Counter[int] = Counter()

    def decide(m: Message) -> Script:
        seen[recipient_of(m)] += 1
        return Script(accept=seen[recipient_of(m)] > 1, retryable=True)

    sms = FakeCarrier("sms", "sms", decide=decide)
    d = dispatcher(store, "paris-node1", sms)
    await start(d, sms)
    await run_until_done(store, campaign, d)
    assert (await store.campaign_summary(campaign)).delivered == 5
    assert all(n == 2 for n in seen.values())
    assert sorted({m.reference.rsplit(":", 1)[1] for m in sms.sent}) == ["0.0", "0.1"]


async def test_voice_acknowledgement_is_final_and_silence_falls_back() -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("oncall", (VOICE_ACK, SMS)))
    campaign = await store.launch_campaign("oncall", "op", population=10, batch_size=10)
    voice = FakeCarrier("voice", "voice", decide=lambda m: Script(ack=recipient_of(m) % 2 == 0))
    sms = FakeCarrier("sms", "sms")
    d = dispatcher(store, "paris-node1", voice, sms)
    await start(d, voice, sms)
    await run_until_done(store, campaign, d)
    summary = await store.campaign_summary(campaign)
    assert summary.acknowledged == 5 and summary.delivered == 5
    assert {recipient_of(m) for m in sms.sent} == {
        recipient_of(m) for m in voice.sent if recipient_of(m) % 2}


async def test_missing_address_channel_is_skipped_to_the_next() -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("email-first", (EMAIL, SMS)))
    campaign = await store.launch_campaign("email-first", "op", population=3, batch_size=3)
    sms = FakeCarrier("sms", "sms")
    d = dispatcher(store, "paris-node1", sms)  # no e-mail carrier on this node
    await start(d, sms)
    await run_until_done(store, campaign, d)
    assert (await store.campaign_summary(campaign)).delivered == 3
    assert len(sms.sent) == 3


async def test_a_node_whose_batch_was_reassigned_has_its_writes_refused() -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms-only", (SMS,)))
    campaign = await store.launch_campaign("sms-only", "op", population=20, batch_size=20)
    slow = FakeCarrier("sms-slow", "sms", decide=lambda m: Script(delay_s=0.5))
    old = dispatcher(store, "paris-node1", slow)
    await start(old, slow)
    task = asyncio.create_task(old.run())
    async with asyncio.timeout(5):
        while len(slow.sent) < 20:
            await asyncio.sleep(0.01)
    # The watchdog declares paris-node1 dead and marseille-node1 takes the batch over.
    assert await store.reassign_batches("paris-node1") == 1
    fast = FakeCarrier("sms-fast", "sms")
    new = dispatcher(store, "marseille-node1", fast)
    await start(new, fast)
    await run_until_done(store, campaign, new)
    old.request_stop("drain")
    await task
    assert old.stats.fencing_rejections >= 1
    assert await store.fencing_rejections() >= 1
    summary = await store.campaign_summary(campaign)
    assert summary.by_site == {"marseille": 20}
    # The successor resent the same attempts: same references, so a deduplicating carrier
    # delivers each once.
    assert sorted(fast.references()) == sorted(slow.references())




async def _dead_paris_node_batch(store: MemoryStore, population: int) -> tuple[int, list[int]]:
    """A campaign whose first batch paris-node1 claimed, then died with it: the watchdog put
    it back reserved 3 s for paris. Returns the campaign and that batch's recipients."""
    await store.create_scenario(ScenarioIn("sms-only", (SMS,)))
    campaign = await store.launch_campaign("sms-only", "op", population=population,
                                           batch_size=20)
    dead = await store.claim_batch("paris-node1", 30, site="paris")
    assert dead is not None
    assert await store.reassign_batches("paris-node1", reserve_for="paris", hold_s=3.0) == 1
    return campaign, [r.id for r in dead.recipients]


async def test_a_batch_reserved_for_paris_goes_to_a_paris_node_not_to_marseille() -> None:
    store = MemoryStore(clock=Clock())  # the clock stands still: the hold never ends here
    campaign, held = await _dead_paris_node_batch(store, population=60)
    paris_sms = FakeCarrier("sms-paris", "sms", decide=lambda m: Script(delay_s=0.05))
    marseille_sms = FakeCarrier("sms-marseille", "sms")
    paris = dispatcher(store, "paris-node2", paris_sms, max_batches=1)  # cannot take them all
    marseille = dispatcher(store, "marseille-node1", marseille_sms)
    await start(paris, paris_sms)
    await start(marseille, marseille_sms)
    await run_until_done(store, campaign, marseille, paris)  # marseille claims first
    assert (await store.campaign_summary(campaign)).delivered == 60
    assert set(held) <= {recipient_of(m) for m in paris_sms.sent}
    assert not set(held) & {recipient_of(m) for m in marseille_sms.sent}
    assert marseille.stats.batches_claimed >= 1  # it took the batches nobody held


async def test_marseille_takes_a_batch_reserved_for_paris_only_once_the_hold_ends() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    campaign, held = await _dead_paris_node_batch(store, population=20)
    sms = FakeCarrier("sms-marseille", "sms")
    marseille = dispatcher(store, "marseille-node1", sms)
    await start(marseille, sms)
    task = asyncio.create_task(marseille.run())
    try:
        clock.now += timedelta(seconds=2.9)
        polls = store.calls.count("claim_batch")
        async with asyncio.timeout(5):  # marseille asks twenty more times during the hold
            while store.calls.count("claim_batch") < polls + 20:
                await asyncio.sleep(0.005)
        assert sms.sent == [] and marseille.stats.batches_claimed == 0
        clock.now += timedelta(seconds=0.1)  # the hold ends: anyone may take the batch
        async with asyncio.timeout(5):
            while (await store.campaign_summary(campaign)).pending:
                await asyncio.sleep(0.01)
    finally:
        marseille.request_stop("drain")
        await task
    assert sorted(recipient_of(m) for m in sms.sent) == held
    assert (await store.campaign_summary(campaign)).by_site == {"marseille": 20}


async def test_drain_releases_unfinished_batches_for_another_node() -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms-only", (SMS,)))
    campaign = await store.launch_campaign("sms-only", "op", population=30, batch_size=10)
    never = FakeCarrier("sms-mute", "sms", decide=lambda m: Script(receipt=None))
    first = dispatcher(store, "paris-node1", never, drain_deadline_s=0.2,
                       receipt_timeout_s=30.0)
    await start(first, never)
    task = asyncio.create_task(first.run())
    async with asyncio.timeout(5):
        while not never.sent:
            await asyncio.sleep(0.01)
    first.request_stop("drain")
    async with asyncio.timeout(5):
        await task
    assert first.running_batches == 0
    assert first.stats.batches_released >= 1
    assert (await store.campaign_summary(campaign)).pending == 30
    sms = FakeCarrier("sms", "sms")
    second = dispatcher(store, "marseille-node1", sms)
    await start(second, sms)
    await run_until_done(store, campaign, second)
    assert (await store.campaign_summary(campaign)).delivered == 30


async def test_closed_gate_sends_nothing() -> None:
    class Closed:
        def may_dispatch(self) -> bool:
            return False

    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms-only", (SMS,)))
    campaign = await store.launch_campaign("sms-only", "op", population=5, batch_size=5)
    sms = FakeCarrier("sms", "sms")
    d = Dispatcher(store, {"sms": sms}, DispatcherConfig("paris-node1", "paris",
                                                         idle_poll_s=0.01), gate=Closed())
    task = asyncio.create_task(d.run())
    await asyncio.sleep(0.2)
    d.request_stop("now")
    await task
    assert sms.sent == []
    assert (await store.campaign_summary(campaign)).pending == 5


async def test_a_node_that_cannot_renew_its_lease_stops_sending_before_it_expires() -> None:
    store = MemoryStore()
    step = ChannelStep("sms", {"fr": "x"}, retries=100_000, retry_interval_s=0.05)
    await store.create_scenario(ScenarioIn("stubborn", (step,)))
    await store.launch_campaign("stubborn", "op", population=5, batch_size=5)
    refusing = FakeCarrier("sms", "sms", decide=lambda m: Script(accept=False, retryable=True))
    d = dispatcher(store, "paris-node1", refusing, lease_s=3.0)
    await start(d, refusing)
    task = asyncio.create_task(d.run())
    async with asyncio.timeout(5):
        while len(refusing.sent) < 5:
            await asyncio.sleep(0.01)
    store.unavailable = True  # the node is cut off from PostgreSQL: no renewal can land
    cut = asyncio.get_running_loop().time()
    await asyncio.sleep(3.2)  # the lease (3 s from its last renewal) has run out by now
    sent_at_expiry = len(refusing.sent)
    await asyncio.sleep(0.5)
    assert len(refusing.sent) == sent_at_expiry, "still sending after the lease could expire"
    # it stopped no later than lease - safety after the last renewal, i.e. before expiry
    assert asyncio.get_running_loop().time() - cut >= 3.0
    d.request_stop("now")
    store.unavailable = False
    await task


@pytest.mark.asyncio
async def test_a_closed_claim_gate_takes_no_new_work_but_finishes_what_it_holds() -> None:
    class Switch:
        open = True

        def may_claim(self) -> bool:
            return self.open

    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms-only", (SMS,)))
    campaign = await store.launch_campaign("sms-only", "op", population=40, batch_size=10)
    slow = FakeCarrier("sms", "sms", decide=lambda m: Script(delay_s=0.3))
    switch = Switch()
    d = Dispatcher(store, {"sms": slow}, DispatcherConfig("paris-node1", "paris", max_batches=1,
                                                          idle_poll_s=0.01), claim_gate=switch)
    await start(d, slow)
    task = asyncio.create_task(d.run())
    async with asyncio.timeout(5):
        while not slow.sent:
            await asyncio.sleep(0.01)
    switch.open = False  # the site is drained: the batch under way is finished, no new claim
    await asyncio.sleep(1.0)
    d.request_stop("drain")
    await task
    summary = await store.campaign_summary(campaign)
    assert (summary.delivered, summary.pending) == (10, 30)
    assert d.stats.batches_claimed == 1 and d.stats.batches_finished == 1


@pytest.mark.asyncio
async def test_a_failing_sms_carrier_moves_sms_work_to_the_other_site() -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms-then-email", (SMS, EMAIL)))
    campaign = await store.launch_campaign("sms-then-email", "op", population=300, batch_size=10)
    refusing = FakeCarrier("sms-paris", "sms", decide=lambda m: Script(accept=False))
    paris_mail = FakeCarrier("mail-paris", "email")
    working = FakeCarrier("sms-marseille", "sms", decide=lambda m: Script(delay_s=0.01))
    marseille_mail = FakeCarrier("mail-marseille", "email")
    paris = dispatcher(store, "paris-node1", refusing, paris_mail, breaker_threshold=5,
                       breaker_cooldown_s=30.0)
    paris.elsewhere = SmsWorksElsewhere()
    marseille = dispatcher(store, "marseille-node1", working, marseille_mail)
    await start(paris, refusing, paris_mail)
    await start(marseille, working, marseille_mail)
    await run_until_done(store, campaign, paris, marseille)
    summary = await store.campaign_summary(campaign)
    assert (summary.delivered, summary.pending) == (300, 0)
    assert paris.breakers.of("sms").opened_count == 1
    outcomes = await store.recipient_outcomes(campaign, limit=300)
    sms_in_marseille = sum(1 for o in outcomes if o.channel == "sms" and o.site == "marseille")
    # Only what paris tried before its breaker opened fell back to e-mail there; the SMS work
    # went to marseille, whose carrier works.
    assert len(refusing.sent) < 5 + 10 * 4  # threshold + what its batches had in flight
    assert sms_in_marseille >= 300 - len(refusing.sent)



@pytest.mark.asyncio
async def test_a_channel_down_everywhere_falls_back_instead_of_stalling() -> None:
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms-then-email", (SMS, EMAIL)))
    campaign = await store.launch_campaign("sms-then-email", "op", population=100, batch_size=10)
    refusing = FakeCarrier("sms-paris", "sms", decide=lambda m: Script(accept=False))
    mail = FakeCarrier("mail-paris", "email")
    paris = dispatcher(store, "paris-node1", refusing, mail, breaker_threshold=5,
                       breaker_cooldown_s=30.0)  # no other site has SMS: nowhere to hand off
    await start(paris, refusing, mail)
    await run_until_done(store, campaign, paris)
    assert paris.breakers.of("sms").is_open()
    outcomes = await store.recipient_outcomes(campaign, limit=100)
    assert {(o.state, o.channel) for o in outcomes} == {("delivered", "email")}


class FinishFailsOnce(MemoryStore):
    """The first ``finish_batch`` of each batch fails as on a pooled connection that a
    restarted HAProxy broke: nothing done, an error raised."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: set[int] = set()

    async def finish_batch(self, batch_id: int, epoch: int, node: str) -> None:
        if batch_id not in self.failed:
            self.failed.add(batch_id)
            raise ConnectionError("server closed the connection unexpectedly")
        await super().finish_batch(batch_id, epoch, node)


async def test_a_batch_whose_finish_fails_once_is_finished_by_a_retry_not_left_to_its_lease(
        ) -> None:
    store = FinishFailsOnce()
    await store.create_scenario(ScenarioIn("sms-only", (SMS,)))
    campaign = await store.launch_campaign("sms-only", "op", population=60, batch_size=20)
    sms = FakeCarrier("sms-paris", "sms")
    d = dispatcher(store, "paris-node1", sms, lease_s=60.0)  # its lease would outlast the test
    await start(d, sms)
    task = asyncio.create_task(d.run())
    try:
        async with asyncio.timeout(10):
            while (await store.campaign_summary(campaign)).state != "completed":
                await asyncio.sleep(0.02)
    finally:
        d.request_stop("drain")
        await task
    assert len(store.failed) == 3
    assert d.stats.batches_finished == 3 and not await store.batches_in_flight()


async def test_outcomes_are_flushed_for_as_long_as_the_lease_lasts_not_a_fixed_20_s(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL failover longer than 20 s must not make a surviving node give up the
    outcomes of a batch it sent (and release it for another node to send again): the flush is
    retried while the batch's lease lasts."""
    from nodes.outcomes import OutcomeBuffer

    deadlines: list[float | None] = []
    close = OutcomeBuffer.close

    async def spy(self: OutcomeBuffer, deadline_s: float | None = 20.0) -> bool:
        deadlines.append(deadline_s)
        return await close(self, deadline_s)

    monkeypatch.setattr(OutcomeBuffer, "close", spy)
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms-only", (SMS,)))
    campaign = await store.launch_campaign("sms-only", "op", population=40, batch_size=20)
    sms = FakeCarrier("sms-paris", "sms")
    d = dispatcher(store, "paris-node1", sms, lease_s=60.0)
    await start(d, sms)
    await run_until_done(store, campaign, d)
    # without a journal: while the lease lasts; with one (none here): until the store answers
    assert len(deadlines) == 2 and all(s is None or 55.0 < s <= 60.0 for s in deadlines), \
        deadlines


async def test_a_batch_keeps_its_lease_while_its_last_recipients_wait_for_receipts() -> None:
    """One recipient is done at once, the other's receipt takes longer than the lease: the
    lease is renewed until both are done, so no other node takes the batch and sends again."""
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("sms-only", (SMS,)))
    campaign = await store.launch_campaign("sms-only", "op", population=2, batch_size=2)
    sms = FakeCarrier("sms-paris", "sms", decide=lambda m: Script(
        delay_s=0.0 if recipient_of(m) % 2 else 4.5))
    first = dispatcher(store, "paris-node1", sms, lease_s=3.0, receipt_timeout_s=10.0)
    other = dispatcher(store, "paris-node2", sms, lease_s=3.0, receipt_timeout_s=10.0)
    await start(first, sms)
    running = asyncio.create_task(first.run())
    try:
        async with asyncio.timeout(5):
            while len(sms.sent) < 2:
                await asyncio.sleep(0.01)
        # the other node claims whatever is claimable until the campaign is done
        await run_until_done(store, campaign, other)
    finally:
        first.request_stop("drain")
        await running
    summary = await store.campaign_summary(campaign)
    assert (summary.delivered, summary.state) == (2, "completed")
    assert len(sms.references()) == len(set(sms.references())) == 2
