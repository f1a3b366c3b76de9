"""The carrier collector against simulators on loopback: submissions become ``submit`` ops,
duplicates are counted as a carrier without dedup delivers them (even with --dedup); a
simulator that stops answering loses nothing, one restarted without its journal leaves a gap that
makes the duplicates checker unknown, one restarted with it carries on."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from chaos.carrier_log import CarrierLog
from chaos.checkers import duplicates
from chaos.history import History
from nodes.carriers.sim.app import SimConfig, Simulator
from tests.carriers.support import HOST, SimFactory

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def url(sim: Simulator) -> str:
    return f"http://{HOST}:{sim.ports['control']}"


async def test_submissions_of_both_sites_feed_the_duplicates_checker(
    sim_factory: SimFactory, http: aiohttp.ClientSession,
) -> None:
    paris = await sim_factory(site="paris", dedup=True)
    marseille = await sim_factory(site="marseille")
    h = History()
    logs = [CarrierLog("paris", url(paris), h, http), CarrierLog("marseille", url(marseille),
                                                                  h, http)]
    for rid in range(1, 6):
        paris.state.record("sms", f"3:{rid}:sms:0", f"p{rid}")
    assert [await log.read() for log in logs] == [5, 0]
    paris.state.record("sms", "3:1:sms:0", "p1b")  # answered as a duplicate by --dedup...
    marseille.state.record("sms", "3:2:sms:0", "m2")  # ...and one across sites
    assert [await log.read() for log in logs] == [1, 1]
    assert [await log.read() for log in logs] == [0, 0]  # nothing twice
    submits = h.of("submit", "ok")
    assert len(submits) == 7 and submits[5].value["resubmission"] is True
    v = duplicates.check(h)
    assert v.validity == "invalid"  # no fault: nothing may be delivered twice
    assert (v.figures["duplicates"], v.figures["same_site"], v.figures["cross_site"]) == (2, 1, 1)


async def test_paging_a_long_log_and_a_restart_leave_a_gap(
    sim_factory: SimFactory, http: aiohttp.ClientSession,
) -> None:
    sim = await sim_factory(site="paris")
    h = History()
    log = CarrierLog("paris", url(sim), h, http)
    for rid in range(12_000):  # more than one page
        sim.state.record("email", f"4:{rid}:email:0", f"e{rid}")
    assert await log.read() == 12_000
    assert [op.value["seq"] for op in h.of("submit")][-1] == 12_000
    port = sim.ports["control"]
    await sim.stop()
    assert await log.read() == 0 and log.unreachable
    again = Simulator(SimConfig(site="paris", host=HOST, control_port=port))
    await again.start()
    try:
        again.state.record("email", "4:1:email:1", "e-new")
        assert await log.read() == 1
    finally:
        await again.stop()
    reasons = [op.value["reason"] for op in h.of("gap")]
    assert len(reasons) == 1 and "restarted without its journal" in reasons[0]
    assert log.outages == 1
    assert duplicates.check(h).validity == "unknown"


async def test_a_simulator_back_with_its_journal_leaves_no_gap(
    sim_factory: SimFactory, http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    journal = str(tmp_path / "paris.jsonl")
    sim = await sim_factory(site="paris", journal=journal)
    sim.state.record("sms", "8:0:sms:0", "old")  # an earlier run's
    h = History()
    log = CarrierLog("paris", url(sim), h, http)
    assert await log.skip_to_end() == 1
    sim.state.record("sms", "8:1:sms:0", "a")
    assert await log.read() == 1
    sim.state.record("sms", "8:2:sms:0", "b")  # accepted, not read yet: then the power goes
    port = sim.ports["control"]
    await sim.stop()
    assert await log.read() == 0 and log.unreachable
    again = Simulator(SimConfig(site="paris", host=HOST, control_port=port, journal=journal))
    await again.start()
    try:
        again.state.record("sms", "8:1:sms:0", "a2")  # resent after the restart
        assert await log.read() == 2
    finally:
        await again.stop()
    assert h.of("gap") == []
    assert [op.value["reference"] for op in h.of("submit")] == ["8:1:sms:0", "8:2:sms:0",
                                                                 "8:1:sms:0"]
    assert h.of("submit")[-1].value["resubmission"] is True  # it remembered the first
    assert duplicates.check(h).figures["duplicates"] == 1
