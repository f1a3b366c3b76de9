"""The drills' routes on the in-process node app (in-memory store and ledger, a site key, the
abort lever on a fake coordination service): a real run needs the approval of someone else,
checked by the node; the runner and approver of the record are what the node authenticated;
the record is signed and its findings are followed up by signed records; the schedule says
which drills are overdue; the abort lever is a coordination key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from failover.drills.book import DrillBook
from failover.drills.lever import ABORT_KEY, Lever
from failover.drills.service import DrillService
from failover.evidence.service import EvidenceService
from nodes.api.identity import TABLE
from nodes.metrics import Metrics
from tests.api.conftest import AUDITOR, ONCALL, OPERATOR, Client, auth, make_app
from tests.evidence_kit import ORIGIN, make_kit
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator
from tests.fakes.memory_store import MemoryStore

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

KINDS = {"lose-primary-site", "lose-witness"}
RUN = "lose-primary-site-20261120T090000Z"


@dataclass
class Node:
    client: Client
    store: MemoryStore
    server: FakeCoordinationServer
    clock: list[datetime]

    def id(self, role: str) -> str:
        """The identity the API gives the test user of ``role`` (whatever its form)."""
        return next(p.id for p in self.client.app[TABLE].principals() if p.role == role)

    async def post(self, path: str, body: dict[str, Any], token: str) -> tuple[int, Any]:
        r = await self.client.post(f"/api/v1{path}", json=body, headers=auth(token))
        return r.status, await r.json()

    async def get(self, path: str, token: str = AUDITOR) -> tuple[int, Any]:
        r = await self.client.get(f"/api/v1{path}", headers=auth(token))
        return r.status, await r.json()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.store.ledger.items]


@pytest_asyncio.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    store = MemoryStore()
    kit = make_kit(store.ledger, tmp_path)
    evidence = EvidenceService(store.ledger, ORIGIN, "paris-node1", "paris", kit.paris,
                               kit.vkeys)
    clock = [datetime.now(UTC)]
    server = FakeCoordinationServer()
    service = DrillService(DrillBook(evidence, kinds=lambda: KINDS, clock=lambda: clock[0]),
                           {"lose-primary-site": 90 * 86400.0, "lose-witness": 182 * 86400.0},
                           Lever(FakeCoordinator(server, "paris-node1")))
    app = make_app(store, Metrics(), evidence_service=evidence, drill_service=service)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield Node(c, store, server, clock)


async def approve(node: Node, token: str = OPERATOR, drill: str = "lose-primary-site") -> str:
    status, body = await node.post("/drills/approvals", {"drill": drill}, token)
    assert status == 201, body
    return str(body["approval"])


async def start(node: Node, **extra: Any) -> tuple[int, Any]:
    return await node.post("/drills/runs", {"drill": "lose-primary-site", "run_id": RUN,
                                            **extra}, ONCALL)


async def test_a_real_run_without_an_approval_from_another_user_is_refused(node: Node) -> None:
    before = len(node.store.ledger.items)
    status, body = await start(node)
    assert status == 403
    assert body["field"] == "approval"
    assert "approval of someone other than its runner" in body["error"]
    mine = await approve(node, ONCALL)  # the runner approving their own drill
    status, body = await start(node, approval=mine)
    assert status == 403
    assert f"was given by {node.id('oncall')}, who runs the drill" in body["error"]
    assert node.kinds()[before:] == ["drill.approved"]  # no run was started


async def test_an_approval_by_someone_else_is_accepted_once(node: Node) -> None:
    approval = await approve(node)
    status, body = await start(node, approval=approval)
    assert status == 201, body
    assert (body["runner"], body["approver"]) == (node.id("oncall"), node.id("operator"))
    started = node.store.ledger.items[-1].doc()
    assert started["kind"] == "drill.started" and started["actor"] == node.id("oncall")
    assert started["details"]["approval"] == approval
    other = {"drill": "lose-primary-site", "run_id": "lose-primary-site-20261120T090500Z",
             "approval": approval}
    status, body = await node.post("/drills/runs", other, ONCALL)
    assert status == 409 and f"approval {approval} was used by drill {RUN}" in body["error"]


async def test_an_approval_holds_for_its_drill_and_its_time_only(node: Node) -> None:
    witness = await approve(node, drill="lose-witness")
    status, body = await start(node, approval=witness)
    assert status == 403 and "is for drill lose-witness, not lose-primary-site" in body["error"]
    approval = await approve(node)
    node.clock[0] += timedelta(days=2)
    status, body = await start(node, approval=approval)
    assert status == 403 and "expired" in body["error"]


async def test_approved_by_names_a_user_the_api_knows_who_is_not_the_runner(node: Node) -> None:
    for name, problem in (("Claire Martin", "is not a user of this API"),
                          (node.id("auditor"), "which may not approve a drill"),
                          (node.id("oncall"), "runs the drill")):
        status, body = await start(node, approved_by=name)
        assert status == 403 and problem in body["error"], (name, body)
    status, body = await start(node, approved_by=node.id("operator"))
    assert status == 201 and body["approver"] == node.id("operator")


async def test_an_approval_is_a_ledger_number_in_ascii_digits(node: Node) -> None:
    """'²' passes str.isdigit() but not int() (it was a 500); 19 digits are past a ledger seq
    (a bigint on PostgreSQL)."""
    for approval in ("²", "1" * 19, "-1", "1.0"):
        status, body = await start(node, approval=approval)
        assert (status, body["field"]) == (422, "approval"), (approval, body)
        assert "the number an approval returned" in body["error"]


async def test_an_auditor_cannot_approve_nor_run(node: Node) -> None:
    status, _ = await node.post("/drills/approvals", {"drill": "lose-witness"}, AUDITOR)
    assert status == 403
    status, _ = await node.post("/drills/runs", {"drill": "lose-witness", "run_id": RUN},
                                AUDITOR)
    assert status == 403


async def test_an_unknown_drill_is_named(node: Node) -> None:
    status, body = await node.post("/drills/approvals", {"drill": "lose-everything"}, OPERATOR)
    assert status == 422 and body["field"] == "drill"
    assert "lose-everything" in body["error"] and "lose-witness" in body["error"]


def record(outcome: str = "passed", **extra: Any) -> dict[str, Any]:
    t = "2026-11-20T09:00:00+00:00"
    return {"type": "drill", "id": RUN, "drill_type": "lose-primary-site",
            "scope": {"description": "power cut of paris", "sites": ["paris"]},
            "targets": {"rto_s": 25, "rpo_s": 0}, "started_at": t,
            "ended_at": "2026-11-20T09:02:00+00:00", "outcome": outcome,
            "steps": [{"name": "step: power cut", "started_at": t, "ended_at": t,
                       "outcome": "ok"}],
            "measured": {"rto_s": 18.5, "rpo_s": 0, "lost": 0},
            "verdicts": [{"invariant": "rpo", "verdict": "pass"}],
            "findings": [{"id": "F1", "criticality": "low", "description": "not checked",
                          "corrective_action": {"description": "to be decided",
                                                "owner": "oncall", "status": "open"}}],
            **extra}


async def test_the_record_names_who_the_node_authenticated_and_is_signed(node: Node) -> None:
    await start(node, approval=await approve(node))
    status, body = await node.post(f"/drills/runs/{RUN}/record",
                                   record(runner="somebody else"), ONCALL)
    assert status == 422 and body["field"] == "runner"
    status, body = await node.post(f"/drills/runs/{RUN}/record", record(), ONCALL)
    assert status == 201, body
    status, again = await node.post(f"/drills/runs/{RUN}/record", record(), ONCALL)
    assert status == 409 and "already has its record" in again["error"]
    status, view = await node.get(f"/drills/records/{RUN}")
    assert status == 200
    assert (view["record"]["runner"], view["record"]["approver"]) == (node.id("oncall"),
                                                                      node.id("operator"))
    assert view["signed_by"].startswith("tenir/paris+")
    assert view["seq"] == body["seq"]


async def test_a_runs_record_is_a_drill_record(node: Node) -> None:
    """The node fills the run's members in; a record of another type is refused, not signed
    as a drill's."""
    await start(node, approval=await approve(node))
    status, body = await node.post(f"/drills/runs/{RUN}/record", record(type="incident"),
                                   ONCALL)
    assert (status, body["field"]) == (422, "type"), body
    assert "drill.record" not in node.kinds()


async def test_a_finding_is_taken_as_sent_as_its_record_keeps_it(node: Node) -> None:
    """Criticality, status and due time as the document says (an enum, an RFC 3339 time), not
    after trimming white space the signed record would not have."""
    await start(node, approval=await approve(node))
    await node.post(f"/drills/runs/{RUN}/record", record(), ONCALL)
    action = {"description": "y", "owner": "z"}
    for body, field in (({"criticality": " high "}, "criticality"),
                        ({"corrective_action": {**action, "due": " 2027-01-15T00:00:00Z"}},
                         "corrective_action.due"),
                        ({"corrective_action": {**action, "due": "2027-01-15"}},
                         "corrective_action.due")):
        finding = {"criticality": "high", "description": "x", "corrective_action": action,
                   **body}
        status, answer = await node.post(f"/drills/records/{RUN}/findings", finding, ONCALL)
        assert (status, answer["field"]) == (422, field), (body, answer)
    status, answer = await node.post(f"/drills/records/{RUN}/findings/F1",
                                     {"status": "done "}, OPERATOR)
    assert (status, answer["field"]) == (422, "status"), answer
    assert "drill.finding" not in node.kinds()


async def test_findings_are_added_and_closed_as_signed_follow_ups(node: Node) -> None:
    await start(node, approval=await approve(node))
    await node.post(f"/drills/runs/{RUN}/record", record(), ONCALL)
    status, body = await node.post(f"/drills/records/{RUN}/findings", {
        "criticality": "urgent", "description": "x",
        "corrective_action": {"description": "y", "owner": "z"}}, ONCALL)
    assert status == 422 and body["field"] == "criticality"
    status, body = await node.post(f"/drills/records/{RUN}/findings", {
        "criticality": "high", "description": "paris took 40 s to rejoin as standby",
        "corrective_action": {"description": "raise Patroni's loop_wait", "owner": "dba",
                              "due": "2027-01-15T00:00:00+00:00"}}, ONCALL)
    assert status == 201 and body["finding"]["id"] == "F2"
    status, body = await node.post(f"/drills/records/{RUN}/findings/F2",
                                   {"status": "done", "note": "deployed on 2027-01-10"}, OPERATOR)
    assert status == 201
    status, body = await node.post(f"/drills/records/{RUN}/findings/F9", {"status": "done"},
                                   OPERATOR)
    assert status == 404
    _, view = await node.get(f"/drills/records/{RUN}")
    states = {f["id"]: f["corrective_action"]["status"] for f in view["findings"]}
    assert states == {"F1": "open", "F2": "done"}
    assert view["findings"][1]["corrective_action"]["note"] == "deployed on 2027-01-10"
    assert [e for e in node.kinds() if e == "drill.finding"] == ["drill.finding"] * 2


async def test_the_schedule_counts_passed_and_failed_drills_not_aborted_ones(
        node: Node) -> None:
    _, body = await node.get("/drills/schedule")
    assert [(d["drill"], d["overdue"], d["last_run"]) for d in body["drills"]] == [
        ("lose-primary-site", True, None), ("lose-witness", True, None)]
    await start(node, approval=await approve(node))
    await node.post(f"/drills/runs/{RUN}/record", record("aborted"), ONCALL)
    _, body = await node.get("/drills/schedule")
    first = body["drills"][0]
    assert first["overdue"] and first["last_run"]["outcome"] == "aborted"
    second = "lose-primary-site-20261120T100000Z"
    await node.post("/drills/runs", {"drill": "lose-primary-site", "run_id": second,
                                     "approval": await approve(node)}, ONCALL)
    await node.post(f"/drills/runs/{second}/record", record("passed", id=second), ONCALL)
    _, body = await node.get("/drills/schedule")
    first = body["drills"][0]
    assert not first["overdue"] and first["last_completed"]["id"] == second
    assert body["sentence"] == "1 of 2 drill kinds overdue: lose-witness"


async def test_the_abort_lever_through_the_api_is_a_coordination_key(node: Node) -> None:
    status, body = await node.post("/drills/abort", {"reason": "real flood alert"}, ONCALL)
    assert status == 202 and body["by"] == node.id("oncall")
    value = json.loads(node.server.keys[ABORT_KEY][0])
    assert (value["by"], value["reason"], value["run"]) == (node.id("oncall"), "real flood alert",
                                                            None)
    assert node.kinds()[-1] == "drill.abort_requested"


async def test_the_drill_campaign_is_launched_under_the_runs_name(node: Node) -> None:
    await node.post("/scenarios", {"name": "demo", "priority": 2, "steps": [
        {"channel": "sms", "templates": {"fr": "x"}}]}, OPERATOR)
    status, body = await node.post(f"/drills/runs/{RUN}/campaign",
                                   {"scenario": "demo", "population": 10}, ONCALL)
    assert status == 404  # no such run yet
    await start(node, approval=await approve(node))
    status, body = await node.post(f"/drills/runs/{RUN}/campaign",
                                   {"scenario": "demo", "population": 10}, ONCALL)
    assert status == 201
    summary = await node.store.campaign_summary(body["id"])
    assert summary.launched_by == f"drill {RUN} ({node.id('oncall')})"
    await node.post(f"/drills/runs/{RUN}/record", record(), ONCALL)
    status, _ = await node.post(f"/drills/runs/{RUN}/campaign",
                                {"scenario": "demo", "population": 10}, ONCALL)
    assert status == 409


async def test_an_app_without_drills_says_so() -> None:
    """A node always has them (nodes/main.py, on the ledger of migration 0005); an app built
    without them answers 503 and says why."""
    app = make_app(MemoryStore(), Metrics(), drill_service=None)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        r = await c.get("/api/v1/drills/schedule", headers=auth(AUDITOR))
        assert r.status == 503
        assert "not configured" in (await r.json())["error"]


async def test_the_metrics_say_which_drills_are_overdue(node: Node) -> None:
    metrics = Metrics()
    from nodes.api.context import CONTEXT

    service = node.client.app[CONTEXT].drills
    assert service is not None
    await start(node, approval=await approve(node))
    await node.post(f"/drills/runs/{RUN}/record", record(), ONCALL)
    await service.refresh(metrics)
    text = metrics.render()
    assert 'tenir_drill_overdue{drill="lose-primary-site"} 0' in text
    assert 'tenir_drill_overdue{drill="lose-witness"} 1' in text
    assert 'tenir_drill_last_run_timestamp_seconds{drill="lose-primary-site"}' in text
    assert 'tenir_drill_last_run_timestamp_seconds{drill="lose-witness"}' not in text
    stop = asyncio.Event()
    stop.set()
    await service.run(metrics, stop)  # returns at once when asked to stop


async def test_a_node_without_a_site_key_accepts_runs_but_signs_no_record() -> None:
    store = MemoryStore()
    evidence = EvidenceService(store.ledger, "tenir.invalid/ledger", "paris-node1", "paris")
    service = DrillService(DrillBook(evidence, kinds=lambda: KINDS), {})
    app = make_app(store, Metrics(), drill_service=service)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        node = Node(c, store, FakeCoordinationServer(), [datetime.now(UTC)])
        status, _ = await start(node, approval=await approve(node))
        assert status == 201
        status, body = await node.post(f"/drills/runs/{RUN}/record", record(), ONCALL)
        assert status == 503 and "no site key" in body["error"]
        assert "tenir drill record FILE" in body["error"]
        assert "drill.record" not in node.kinds()
