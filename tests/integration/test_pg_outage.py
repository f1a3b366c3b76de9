"""A PostgreSQL failover as the alert nodes see it, on the loopback harness (a throwaway
PostgreSQL, etcd, both sites' carrier simulators and four alert nodes, each its own process):
PostgreSQL is stopped as a crash does mid-campaign and started again on the same data.

* The nodes keep sending through the outage (the simulators' submission logs), their outcomes
  waiting in their journals; after it every recipient has one final outcome, the outcomes
  recorded are exactly what the carriers received, and nothing was sent twice (no node failed:
  the duplicates checker's bound is 0).
* Journal flush: during the outage two nodes are killed (SIGKILL) while their journals hold
  outcomes PostgreSQL never had. One is started again at once (same name: it waits for the
  store, then flushes); the other only once the watchdog has moved its batches (its flush is
  refused by fencing, counted, and the new owners send those messages again with the same
  references). Every journaled outcome ends recorded once, by its node or by the new owner:
  none lost, none recorded twice; the chaos checkers say valid, duplicates within their bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

import aiohttp
import psycopg
import pytest

from chaos.carrier_log import CarrierLog
from chaos.checkers import duplicates, fencing, recipients
from chaos.history import History
from chaos.pg_observer import PgObserver
from nodes.journal import read_journal
from replication.store_api import Outcome
from tests.loopback.cluster import LoopbackCluster

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

POPULATION = 12_000
OUTAGE_S = 8.0  # within what a 15 s lease covers (13/18 of it: 10.8 s)


def controls(lc: LoopbackCluster) -> aiohttp.ClientSession:
    """A session for the simulators' control ports (HTTPS under the harness's CA)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=lc.client_ssl() or True))


def journaled(lc: LoopbackCluster, node: str) -> list[Outcome]:
    """The outcomes ``node``'s journal holds unsettled, as they are on disk now."""
    path = lc.journal_dir / f"{node}.journal"
    if not path.exists():
        return []
    return [o for g in read_journal(path, node).groups.values() for o in g.outcomes]


def attempts(lc: LoopbackCluster, campaign: int) -> dict[str, tuple[str, int]]:
    """reference -> (node, epoch) of each recorded attempt."""
    with psycopg.connect(lc.dsn) as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT reference, node, epoch FROM attempts WHERE campaign_id = %s", (campaign,))}


def delivered(lc: LoopbackCluster, campaign: int) -> int:
    with psycopg.connect(lc.dsn) as conn:
        row = conn.execute("SELECT count(*) FROM recipients WHERE campaign_id = %s AND"
                           " state <> 'pending'", (campaign,)).fetchone()
    return int(row[0]) if row else 0


async def read_when_back(obs: PgObserver) -> None:
    """The observer's first read after the outage (its old connection died with PostgreSQL)."""
    for _ in range(20):
        with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
            await obs.read()
            return
        await asyncio.sleep(0.5)
    await obs.read()


async def launched(lc: LoopbackCluster, h: History, after: int) -> int:
    h.add("workload:0", "invoke", "launch", {"population": POPULATION, "scenario": "demo"})
    campaign = await asyncio.to_thread(lc.launch, POPULATION)
    h.add("workload:0", "ok", "launch", {"campaign": campaign, "recipients": POPULATION})
    async with asyncio.timeout(60):
        while await asyncio.to_thread(delivered, lc, campaign) < after:
            await asyncio.sleep(0.1)
    return campaign


async def finish(lc: LoopbackCluster, h: History, obs: PgObserver, logs: list[CarrierLog],
                 campaign: int) -> None:
    row = await asyncio.to_thread(lc.wait_done, campaign, 180.0)
    assert row["completed_at"] is not None, "\n".join(n.proc.log_tail() for n in lc.node_list)
    await read_when_back(obs)
    await obs.final(campaign)
    for log in logs:
        await log.read()


def judged(h: History) -> dict[str, Any]:
    verdicts = {v.checker: v for v in (recipients.check(h), duplicates.check(h),
                                       fencing.check(h))}
    for verdict in verdicts.values():
        assert verdict.validity == "valid", verdict
    return {name: v.figures for name, v in verdicts.items()}


async def stop_pg_mid_campaign(lc: LoopbackCluster, h: History, http: aiohttp.ClientSession,
                               obs: PgObserver) -> tuple[list[CarrierLog], int]:
    """The carriers' logs followed, a campaign launched and 1,000 of it done, then PostgreSQL
    stopped as a crash does (the fault in the history)."""
    logs = [CarrierLog(site, sim.control, h, http) for site, sim in lc.sims.items()]
    for log in logs:
        await log.skip_to_end()
    await obs.skip_existing()
    campaign = await launched(lc, h, after=1_000)
    await obs.read()
    h.add("nemesis", "invoke", "fault", {"name": "postgres-outage", "target": "postgres",
                                         "params": {}})
    lc.stop_pg()
    return logs, campaign


async def test_nodes_keep_sending_through_a_postgresql_outage_and_record_everything_after(
        ) -> None:
    with LoopbackCluster(nodes=4, rate_per_s=150, log_level="INFO") as lc:
        h = History()
        async with controls(lc) as http, PgObserver(lc.dsn, h) as obs:
            logs, campaign = await stop_pg_mid_campaign(lc, h, http, obs)
            down = time.time()
            await asyncio.sleep(OUTAGE_S / 2)
            half = {n.proc.name: len(journaled(lc, n.proc.name)) for n in lc.node_list}
            await asyncio.sleep(OUTAGE_S / 2)
            waiting = {n.proc.name: len(journaled(lc, n.proc.name)) for n in lc.node_list}
            lc.start_pg_again()
            up = time.time()
            h.add("nemesis", "ok", "heal", {"name": "postgres-outage", "target": "postgres"})
            await finish(lc, h, obs, logs, campaign)
        subs = lc.submissions()
        during = sorted(float(s["at"]) for s in subs if down < float(s["at"]) < up)
        # sending went on through the outage, to its end, and what it sent waited in journals
        assert during and during[-1] > down + OUTAGE_S / 2, (len(during), half, waiting)
        assert all(waiting[n] >= half[n] for n in waiting) and sum(waiting.values()) > 0
        assert sum(waiting.values()) <= len(during) + 4 * 2 * 100  # outcomes of what was sent
        # every journal flushed once PostgreSQL answered
        assert all(not journaled(lc, n.proc.name) for n in lc.node_list)
        received = Counter(f"{s['channel']}|{s['reference']}" for s in subs)
        recorded = attempts(lc, campaign)
        assert set(received) == {f"{ref.split(':')[2]}|{ref}" for ref in recorded
                                 if not ref.endswith(":final")}
        figures = judged(h)
        assert figures["duplicates"]["duplicates"] == 0  # nobody died: nothing sent twice
        gap = max(b - a for a, b in zip([down, *during], [*during, up], strict=True))
        print(f"\nsubmissions during the {OUTAGE_S:g} s outage: {len(during)}; largest gap "
              f"{gap:.2f} s; journaled at its end: {waiting}")


async def test_a_node_killed_with_its_journal_unflushed_loses_nothing_and_records_nothing_twice(
        ) -> None:
    with LoopbackCluster(nodes=4, rate_per_s=150, log_level="INFO") as lc:
        h = History()
        early, late = 0, 1  # paris-node1 restarted at once; marseille-node1 after the move
        names = [lc.node_list[i].proc.name for i in (early, late)]
        async with controls(lc) as http, PgObserver(lc.dsn, h) as obs:
            logs, campaign = await stop_pg_mid_campaign(lc, h, http, obs)
            async with asyncio.timeout(OUTAGE_S):
                while not all(len(journaled(lc, n)) >= 50 for n in names):
                    await asyncio.sleep(0.05)
            h.add("nemesis", "invoke", "fault", {"name": "kill", "nodes": names,
                                                 "target": ",".join(names), "params": {}})
            for i in (early, late):
                lc.node_list[i].proc.kill()
            lost_with = {n: journaled(lc, n) for n in names}  # on disk as they died
            groups = {n: list(read_journal(lc.journal_dir / f"{n}.journal", n).groups.values())
                      for n in names}
            epochs = {n: {(g.batch_id, g.epoch) for g in groups[n]} for n in names}
            claim_of = {o.reference: (n, g.epoch) for n in names for g in groups[n]
                        for o in g.outcomes}  # the claim each journaled outcome was sent under
            lc.restart_node(early)  # its service manager starts it again at once
            await asyncio.sleep(2.0)
            lc.start_pg_again()
            h.add("nemesis", "ok", "heal", {"name": "postgres-outage", "target": "postgres"})
            await read_when_back(obs)
            async with asyncio.timeout(60):  # the watchdog moves the other one's batches
                while await asyncio.to_thread(_held_by, lc, names[1]):
                    await asyncio.sleep(0.2)
            lc.restart_node(late)
            await finish(lc, h, obs, logs, campaign)
            await asyncio.sleep(1.0)
            late_log = lc.node_list[late].proc.log_tail(10_000)
        recorded = attempts(lc, campaign)
        received = Counter(f"{s['channel']}|{s['reference']}" for s in lc.submissions())
        flushed = resent = 0
        for node in names:
            assert lost_with[node], node
            for o in lost_with[node]:
                assert o.reference in recorded, f"{o.reference} of {node} lost"  # none lost
                times = received.get(f"{o.channel}|{o.reference}", 0)
                # Recorded under the claim it was journaled under: flushed by the node's next
                # life, not sent again. Otherwise the batch moved first and its new owner (this
                # node's next life, or another) sent it again under a newer epoch.
                if recorded[o.reference] == claim_of[o.reference]:
                    assert times == 1, o.reference
                    flushed += 1
                elif not o.reference.endswith(":final"):  # refused: sent again, same reference
                    assert times >= 2, o.reference
                    resent += 1
        assert flushed > 0, "the early node's journal should have been flushed"
        assert resent > 0, "the late node's journal should have been refused"
        assert "refused by fencing" in late_log and "previous life's journal flushed" in late_log
        with psycopg.connect(lc.dsn) as conn:
            row = conn.execute("SELECT count(*) FROM fencing_rejections WHERE node = %s AND"
                               " operation = 'record_outcomes'", (names[1],)).fetchone()
        assert row is not None and row[0] >= len(epochs[names[1]])  # each refusal counted
        figures = judged(h)  # one final outcome each; duplicates within what was in flight
        assert figures["duplicates"]["duplicates"] >= resent
        print(f"\njournaled outcomes flushed by their node: {flushed}, refused and sent again: "
              f"{resent}; duplicates {figures['duplicates']}")


def _held_by(lc: LoopbackCluster, node: str) -> int:
    with psycopg.connect(lc.dsn) as conn:
        row = conn.execute("SELECT count(*) FROM batches WHERE state = 'claimed' AND owner = %s",
                           (node,)).fetchone()
    return int(row[0]) if row else 0
