"""The simulator's submission log: every submission recorded, paged by cursor, bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.carriers.sim.app import Simulator
from nodes.carriers.sim.state import SimState
from nodes.carriers.sim.submissions import JournalError, SubmissionLog
from tests.carriers.support import Control

pytestmark = pytest.mark.integration


@pytest.mark.unit
def test_ring_pages_by_cursor_and_counts_what_it_lost() -> None:
    log = SubmissionLog("paris", capacity=3)
    for i in range(5):
        log.append("sms", f"1:{i}:sms:0", f"id{i}", resubmission=False)
    page = log.page(0, limit=10)
    assert [s["seq"] for s in page["items"]] == [3, 4, 5]
    assert page["lost"] == 2 and page["next"] == 5 and page["last"] == 5
    assert log.page(3)["lost"] == 0 and [s["seq"] for s in log.page(3)["items"]] == [4, 5]
    assert log.page(5)["items"] == [] and log.page(5)["next"] == 5
    two = log.page(2, limit=2)
    assert [s["seq"] for s in two["items"]] == [3, 4] and two["next"] == 4
    log.clear()
    cleared = log.page(5)
    assert cleared["items"] == [] and cleared["lost"] == 0
    assert log.page(4)["lost"] == 1  # the entry it had not read was cleared
    log.append("email", "1:9:email:0", "idx", resubmission=True)
    assert log.page(5)["items"][0]["seq"] == 6  # sequence numbers go on after a clear
    with pytest.raises(ValueError, match=r"^limit:"):
        log.page(0, limit=0)


@pytest.mark.unit
def test_a_journal_keeps_the_log_across_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "submissions.jsonl"
    state = SimState("paris", dedup=True, log_capacity=4, journal=path)
    for rid in (1, 2, 1):
        state.record("sms", f"7:{rid}:sms:0", f"m{rid}")
    boot = state.submissions.boot
    # killed: nothing is closed or flushed; a torn last line as a kill mid-write could leave
    with open(path, "a", encoding="utf-8") as out:
        out.write('{"seq": 4, "site": "par')
    again = SimState("paris", dedup=True, log_capacity=4, journal=path)
    log = again.submissions
    assert (log.boot, log.last_seq, log.replayed) == (boot, 3, 3)
    assert [s["reference"] for s in log.page(0)["items"]] == ["7:1:sms:0", "7:2:sms:0",
                                                              "7:1:sms:0"]
    assert again.report()["sms"]["duplicates"] == 1  # the counts came back with the entries
    admission = again.record("sms", "7:2:sms:0", "m2b")
    assert admission.duplicate and admission.carrier_id == "m2"  # dedup remembers
    assert log.last_seq == 4
    again.reset()  # a cleared log stays cleared after a restart
    third = SimState("paris", dedup=False, log_capacity=4, journal=path)
    assert third.submissions.page(0)["items"] == [] and third.submissions.last_seq == 4
    with pytest.raises(JournalError, match="journal of site 'paris', not 'marseille'"):
        SubmissionLog("marseille", journal=path)


@pytest.mark.unit
def test_a_journal_is_compacted_to_what_the_ring_holds(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    log = SubmissionLog("paris", capacity=3, journal=path)
    for i in range(20):
        log.append("sms", f"1:{i}:sms:0", f"id{i}", resubmission=False)
    log.close()
    assert len(path.read_text().splitlines()) <= 2 * 3 + 3
    again = SubmissionLog("paris", capacity=3, journal=path)
    page = again.page(0, limit=10)
    assert [s["seq"] for s in page["items"]] == [18, 19, 20] and page["lost"] == 17


@pytest.mark.asyncio
async def test_every_submission_is_logged_and_paged(sim: Simulator, control: Control) -> None:
    for rid in (1, 2, 1):
        sim.state.record("sms", f"5:{rid}:sms:0", f"m{rid}")
    sim.state.record("voice", "5:1:voice:0", "call-1")
    status, page = await control.get("/submissions?after=0&limit=2")
    assert status == 200 and page["site"] == "paris" and page["boot"]
    assert [(s["reference"], s["resubmission"]) for s in page["items"]] == [
        ("5:1:sms:0", False), ("5:2:sms:0", False)]
    status, rest = await control.get(f"/submissions?after={page['next']}")
    assert [(s["channel"], s["reference"], s["resubmission"]) for s in rest["items"]] == [
        ("sms", "5:1:sms:0", True), ("voice", "5:1:voice:0", False)]
    first = rest["items"][0]
    assert first["site"] == "paris" and first["message_id"] == "m1"
    assert first["at"] > 1e9 and first["mono"] > 0
    for query, field in (("after=-1", "after"), ("after=x", "after"), ("limit=0", "limit"),
                         ("limit=100000", "limit")):
        status, body = await control.get(f"/submissions?{query}")
        assert status == 400 and body["field"] == field, (query, body)
