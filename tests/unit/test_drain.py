"""Site drain on fakes: the node's claim gate fed by the coordinator's watch, the refusal to drain
both sites, the dispatcher taking no new batch on a drained site while the other site finishes
the campaign, and the wait until a site holds no batch."""

from __future__ import annotations

import asyncio

import pytest

from cluster.coordination.base import CoordinationUnavailable, MemberInfo
from cluster.wait import WaitTimeout
from failover.drain import (
    ClusterSnapshot,
    DrainRefused,
    IdleReport,
    clear_drain,
    drained_sites,
    set_drain,
    wait_site_idle,
)
from nodes.dispatcher import Dispatcher, DispatcherConfig
from nodes.drain import CoordinationClusterView, SiteDrainGate, drain_key, site_of_key
from replication.store_api import ChannelStep, ScenarioIn
from tests.fakes.carriers import FakeCarrier, Script, SubmittingCarrier, both_kinds
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit
_carriers = both_kinds(FakeCarrier=SubmittingCarrier)  # every test with both kinds

SITES = ("paris", "marseille")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def started_gate(server: FakeCoordinationServer, node: str = "paris-node1",
                       site: str = "paris") -> SiteDrainGate:
    gate = SiteDrainGate(FakeCoordinator(server, node), node, site, retry_s=0.01)
    assert await gate.start(first_sync_s=1.0) is True
    return gate


def test_keys_name_sites() -> None:
    assert drain_key("paris") == "drain/paris"
    assert site_of_key("drain/paris") == "paris"
    assert site_of_key("drain/") is None and site_of_key("members/x") is None
    assert site_of_key("drain/a/b") is None


@pytest.mark.asyncio
async def test_gate_closes_for_its_own_site_only_and_opens_again_on_undrain() -> None:
    server = FakeCoordinationServer()
    operator = FakeCoordinator(server, "cli")
    gate = await started_gate(server)
    try:
        assert gate.may_claim() is True
        assert await set_drain(operator, "marseille", SITES) is True
        await settle()
        assert gate.drained_sites == {"marseille"}
        assert gate.may_claim() is True  # the other site drained: paris takes the work
        assert await clear_drain(operator, "marseille") is True
        assert await set_drain(operator, "paris", SITES) is True
        await settle()
        assert gate.may_claim() is False  # its own site drained: no new batch
        assert await clear_drain(operator, "paris") is True
        await settle()
        assert gate.may_claim() is True
        assert gate.drained_sites == frozenset()
    finally:
        await gate.close()


@pytest.mark.asyncio
async def test_a_node_starting_on_a_drained_site_claims_nothing_from_the_start() -> None:
    server = FakeCoordinationServer()
    await set_drain(FakeCoordinator(server, "cli"), "paris", SITES)
    gate = await started_gate(server)
    try:
        assert gate.synced and gate.may_claim() is False
    finally:
        await gate.close()


@pytest.mark.asyncio
async def test_gate_is_open_until_the_flags_are_read_then_follows_them() -> None:
    server = FakeCoordinationServer(reachable=False)
    gate = SiteDrainGate(FakeCoordinator(server, "paris-node1"), "paris-node1", "paris",
                         retry_s=0.01)
    try:
        assert await gate.start(first_sync_s=0.05) is False
        assert gate.may_claim() is True and not gate.synced  # alerts are not held back
        server.keys[drain_key("paris")] = (b"{}", 1, None)
        server.reachable = True  # the watch is retried and resyncs
        async with asyncio.timeout(2):
            while gate.may_claim():
                await asyncio.sleep(0.01)
        assert gate.synced
    finally:
        await gate.close()


@pytest.mark.asyncio
async def test_close_reaps_the_watch_task_and_is_idempotent() -> None:
    server = FakeCoordinationServer()
    gate = await started_gate(server)
    assert len(server.watchers) == 1
    task = gate._task
    await gate.close()
    await gate.close()
    assert task is not None and task.done()
    assert server.watchers == []  # the watch generator was finalised


@pytest.mark.asyncio
async def test_draining_both_sites_is_refused_naming_the_drained_one() -> None:
    server = FakeCoordinationServer()
    c = FakeCoordinator(server, "cli")
    assert await set_drain(c, "paris", SITES, by="alice@host") is True
    assert await set_drain(c, "paris", SITES) is False  # already drained: idempotent
    with pytest.raises(DrainRefused, match=r"site paris is already drained.*marseille.*"
                                           r"tenir site undrain paris"):
        await set_drain(c, "marseille", SITES)
    assert await drained_sites(c, SITES) == ["paris"]
    with pytest.raises(DrainRefused, match="not a datacenter site"):
        await set_drain(c, "witness", SITES)
    await clear_drain(c, "paris")
    assert await set_drain(c, "marseille", SITES) is True
    assert await clear_drain(c, "paris") is False


class RacingCoordinator(FakeCoordinator):
    """Another operator drains ``other`` just as this one writes its own key."""

    def __init__(self, server: FakeCoordinationServer, other: str) -> None:
        super().__init__(server, "cli")
        self.other = other

    async def compare_and_set(self, key: str, value: bytes, version: int | None) -> bool:
        wrote = await super().compare_and_set(key, value, version)
        self.server._put(drain_key(self.other), b"{}", None)
        return wrote


@pytest.mark.asyncio
async def test_a_concurrent_drain_of_the_other_site_backs_this_one_out() -> None:
    server = FakeCoordinationServer()
    c = RacingCoordinator(server, "marseille")
    with pytest.raises(DrainRefused, match="site marseille is now drained"):
        await set_drain(c, "paris", SITES)
    assert await drained_sites(c, SITES) == ["marseille"]  # ours is gone: one site still works


@pytest.mark.asyncio
async def test_unavailable_coordination_on_write_says_the_state_is_unknown() -> None:
    server = FakeCoordinationServer()

    class Flaky(FakeCoordinator):
        async def compare_and_set(self, key: str, value: bytes, version: int | None) -> bool:
            raise CoordinationUnavailable("no answer")

    with pytest.raises(Exception, match="may or may not be set"):
        await set_drain(Flaky(server, "cli"), "paris", SITES)


@pytest.mark.asyncio
async def test_cluster_view_reads_members_leader_and_drained_sites() -> None:
    server = FakeCoordinationServer()
    node = FakeCoordinator(server, "paris-node1")
    await node.join(MemberInfo("paris-node1", "paris", "10.0.0.1", url="http://10.0.0.1:8080"))
    await node.campaign("watchdog")
    gate = SiteDrainGate(node, "paris-node1", "paris")
    view = CoordinationClusterView(node, gate)
    with pytest.raises(CoordinationUnavailable, match="not read"):
        await view.drained_sites()  # not synced yet: unknown, not "none"
    await set_drain(FakeCoordinator(server, "cli"), "marseille", SITES)
    assert await gate.start(first_sync_s=1.0)
    try:
        assert [m.url for m in await view.members()] == ["http://10.0.0.1:8080"]
        assert await view.watchdog_leader() == "paris-node1"
        assert await view.drained_sites() == ["marseille"]
    finally:
        await gate.close()


@pytest.mark.asyncio
async def test_dispatcher_on_a_drained_site_finishes_what_it_holds_and_claims_nothing_more(
) -> None:
    server = FakeCoordinationServer()
    store = MemoryStore()
    await store.create_scenario(ScenarioIn("s", (ChannelStep("sms", {"fr": "x"}, retries=0),)))
    campaign = await store.launch_campaign("s", "op", population=200, batch_size=10)
    gate = await started_gate(server)
    sms = {"paris": FakeCarrier("sms-paris", "sms", decide=lambda m: Script(delay_s=0.5)),
           "marseille": FakeCarrier("sms-marseille", "sms")}
    ds = {s: Dispatcher(store, {"sms": sms[s]},
                        DispatcherConfig(node=f"{s}-node1", site=s, idle_poll_s=0.01,
                                         lease_s=5.0, max_batches=2),
                        claim_gate=gate if s == "paris" else None) for s in SITES}
    for s in SITES:
        await sms[s].start(ds[s].on_receipt, ds[s].on_ack)
    tasks = [asyncio.create_task(ds["paris"].run())]
    try:
        async with asyncio.timeout(5):  # paris holds two batches, its receipts take 0.5 s
            while ds["paris"].stats.batches_claimed < 2:
                await asyncio.sleep(0.005)
        await set_drain(FakeCoordinator(server, "cli"), "paris", SITES)
        await settle()
        assert gate.may_claim() is False
        tasks.append(asyncio.create_task(ds["marseille"].run()))
        async with asyncio.timeout(10):
            while (await store.campaign_summary(campaign)).pending:
                await asyncio.sleep(0.01)
    finally:
        for d in ds.values():
            d.request_stop("drain")
        await asyncio.gather(*tasks)
        await gate.close()
    paris = ds["paris"].stats
    assert (paris.batches_claimed, paris.batches_finished, paris.batches_released) == (2, 2, 0)
    summary = await store.campaign_summary(campaign)
    assert summary.by_site == {"paris": 20, "marseille": 180}
    assert (summary.delivered, summary.pending) == (200, 0)


class Snapshots:
    def __init__(self, *views: dict[int, dict[str, int]]) -> None:
        self.views = list(views)

    def snapshot(self) -> ClusterSnapshot:
        view = self.views.pop(0) if len(self.views) > 1 else self.views[0]
        return ClusterSnapshot(view, {"paris-node3": "paris"})


NODES = {"paris-node1": "paris", "marseille-node1": "marseille"}


def test_wait_site_idle_reports_what_the_site_held_and_where_the_work_is() -> None:
    probe = Snapshots({7: {"paris-node1": 3, "paris-node3": 1, "marseille-node1": 2}},
                      {7: {"paris-node1": 1, "marseille-node1": 4}},
                      {7: {"marseille-node1": 4}, 9: {"marseille-node1": 1}})
    report = wait_site_idle("paris", NODES, probe, timeout=5, settle_s=0, interval=0.01)
    assert report.held_at_start == {7: {"paris-node1": 3, "paris-node3": 1}}
    assert report.elsewhere_at_end == {7: {"marseille-node1": 4}, 9: {"marseille-node1": 1}}
    sentence = report.sentence()
    assert sentence.startswith("site paris finished the 4 batches it held (campaign 7) in ")
    assert sentence.endswith("takes no new one; the other site holds 5 batches (campaign 7: "
                             "marseille-node1 4, campaign 9: marseille-node1 1)")
    assert report.to_json()["held_at_start"] == {"7": {"paris-node1": 3, "paris-node3": 1}}


def test_wait_site_idle_times_out_naming_what_it_waited_for() -> None:
    probe = Snapshots({3: {"paris-node1": 2}})
    with pytest.raises(WaitTimeout, match=r"no node of site paris to hold a batch; last seen: "
                                          r"site paris holds 2 batches \(campaign 3"):
        wait_site_idle("paris", NODES, probe, timeout=0.1, settle_s=0, interval=0.01)


def test_idle_report_of_a_site_that_held_nothing() -> None:
    assert IdleReport("paris", {}, {}, 0.5).sentence() == (
        "site paris held no batch and takes no new one; no batch is in flight elsewhere")
