"""A launch whose writer dies half-way, on the loopback harness (a throwaway PostgreSQL, etcd,
both sites' carrier simulators and two alert nodes, each its own process): the node that took
the API call is SIGKILLed while its launch is being written. The survivor's watchdog fails the
launch; what was written is sent; the campaign ends 'failed', not 'completed'; the outcomes
recorded are exactly what the carriers received; the chaos checkers say valid."""

from __future__ import annotations

import asyncio

import aiohttp
import psycopg
import pytest

from chaos.carrier_log import CarrierLog
from chaos.checkers import duplicates, fencing, recipients
from chaos.history import History
from chaos.pg_observer import PgObserver
from tests.loopback.cluster import LoopbackCluster

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

REQUESTED = 60_000


def _written(lc: LoopbackCluster, campaign: int) -> tuple[str, str, int]:
    with psycopg.connect(lc.dsn) as conn:
        row = conn.execute("SELECT state, launch_state, recipients FROM campaigns WHERE id = %s",
                           (campaign,)).fetchone()
    assert row is not None
    return str(row[0]), str(row[1]), int(row[2])


async def test_a_launch_whose_writer_dies_half_way_ends_failed_with_what_was_sent() -> None:
    with LoopbackCluster(nodes=2, rate_per_s=2000, log_level="INFO") as lc:
        writer, survivor = lc.node_list
        h = History()
        h.add("workload:0", "invoke", "launch", {"population": REQUESTED, "scenario": "demo"})
        answer = await asyncio.to_thread(lc.api, "POST", "/campaigns",
                                         {"scenario": "demo", "population": REQUESTED})
        campaign = int(answer["id"])
        assert answer["launch_state"] == "writing" and 0 < answer["recipients"] < REQUESTED
        # Hold the launch: a chunk ends by moving the campaign's counter, which waits on this
        # row lock, so the writer dies with its launch half-way whatever the machine's speed.
        with psycopg.connect(lc.dsn) as blocker:
            blocker.execute("SELECT 1 FROM campaigns WHERE id = %s FOR UPDATE", (campaign,))
            await asyncio.sleep(0.5)  # the writer is now waiting on the lock with its next chunk
            h.add("nemesis", "invoke", "fault", {"name": "kill", "nodes": [writer.proc.name],
                                                 "target": writer.proc.name, "params": {}})
            writer.proc.kill()
            blocker.rollback()
        state, launch_state, written = _written(lc, campaign)
        assert launch_state == "writing" and written == answer["recipients"]

        connector = aiohttp.TCPConnector(ssl=lc.client_ssl() or True)  # the control: HTTPS
        async with aiohttp.ClientSession(connector=connector) as http, \
                PgObserver(lc.dsn, h) as obs:
            carriers = [CarrierLog(site, sim.control, h, http) for site, sim in lc.sims.items()]
            row = await asyncio.to_thread(lc.wait_done, campaign, 120.0)
            assert row["completed_at"] is not None, survivor.proc.log_tail()
            await obs.read()
            await obs.final(campaign)
            for log in carriers:
                await log.read()
        state, launch_state, written = _written(lc, campaign)
        # ended failed, not completed; every recipient written got its final outcome
        assert (state, launch_state) == ("failed", "failed")
        assert 0 < written < REQUESTED
        h.add("workload:0", "ok", "launch", {"campaign": campaign, "recipients": written})
        summary = await asyncio.to_thread(lc.api, "GET", f"/campaigns/{campaign}", None, 1)
        assert summary["state"] == "failed" and summary["pending"] == 0
        assert summary["launch"]["requested"] == REQUESTED and summary["launch"]["error"]
        # the outcomes recorded are what the carriers received, reference for reference
        with psycopg.connect(lc.dsn) as conn:
            recorded = {f"{r[0]}|{r[1]}" for r in conn.execute(
                "SELECT channel, reference FROM attempts WHERE campaign_id = %s", (campaign,))}
            events = [r[0] for r in conn.execute(
                "SELECT kind FROM events WHERE campaign_id = %s", (campaign,))]
        received = lc.submitted_references()
        assert recorded == set(received)
        assert "watchdog.launch_failed" in events
        for verdict in (recipients.check(h), duplicates.check(h), fencing.check(h)):
            assert verdict.validity == "valid", verdict
