"""``tenir drill ...`` and ``tenir status`` against an in-process node app with the continuity
ledger and the drills' routes (in-memory store, a site key, the abort lever on a fake
coordination service): approve, a real run refused without an approval, report (text within
80 columns and the HTML page), findings, the abort lever through the API, overdue drills in
``tenir status --json``, snapshots compared."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cluster import cli
from failover.drills.book import DrillBook
from failover.drills.lever import ABORT_KEY, Lever
from failover.drills.service import DrillService
from failover.evidence.service import EvidenceService
from nodes.api.identity import TABLE
from nodes.metrics import Metrics
from tests.api.conftest import AUDITOR, ONCALL, OPERATOR, make_app
from tests.cli.support import NodeServer, write_inventory
from tests.evidence_kit import ORIGIN, make_kit
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator

pytestmark = pytest.mark.unit

RUN = "lose-witness-20261120T090000Z"
KINDS = {"lose-witness", "lose-primary-site"}


class DrillNodeServer(NodeServer):
    """The node app with its evidence and drills, served on 127.0.0.1."""

    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.tmp = tmp
        self.lever_server = FakeCoordinationServer()

    def app(self) -> web.Application:
        kit = make_kit(self.store.ledger, self.tmp)
        evidence = EvidenceService(self.store.ledger, ORIGIN, "paris-node1", "paris", kit.paris,
                                   kit.vkeys)
        drills = DrillService(DrillBook(evidence, kinds=lambda: KINDS),
                              {"lose-witness": 182 * 86400.0, "lose-primary-site": 91 * 86400.0},
                              Lever(FakeCoordinator(self.lever_server, "paris-node1")))
        return make_app(self.store, Metrics(), evidence_service=evidence, drill_service=drills)

    def id(self, role: str) -> str:
        """The identity the API gives the test user of ``role``."""
        assert self.runner is not None
        return next(p.id for p in self.runner.app[TABLE].principals() if p.role == role)

    def post(self, path: str, body: Any, token: str) -> Any:
        from cluster.httpjson import request_json

        _, data = request_json("POST", self.url + path, body, timeout=10.0, bearer=token,
                               accept_status=(200, 201, 202))
        return data


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DrillNodeServer]:
    with DrillNodeServer(tmp_path) as s:
        yield s


@pytest.fixture
def inventory(server: DrillNodeServer, tmp_path: Path) -> str:
    return str(write_inventory(tmp_path, server.port))


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, token: str,
        *argv: str) -> tuple[int, list[str], list[str]]:
    monkeypatch.setenv("TENIR_TOKEN", token)
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def stored_drill(server: DrillNodeServer) -> None:
    approval = server.post("/drills/approvals", {"drill": "lose-witness"}, OPERATOR)["approval"]
    server.post("/drills/runs", {"drill": "lose-witness", "run_id": RUN, "approval": approval},
                ONCALL)
    t = "2026-11-20T09:00:00+00:00"
    server.post(f"/drills/runs/{RUN}/record", {
        "scope": {"description": "power cut of the witness", "sites": ["witness"]},
        "targets": {"rto_s": 5, "rpo_s": 0}, "started_at": t,
        "ended_at": "2026-11-20T09:01:30+00:00", "outcome": "passed",
        "steps": [{"name": "step: power cut of the witness site", "started_at": t,
                   "ended_at": t, "outcome": "ok", "detail": "power cut of site witness"}],
        "measured": {"rto_s": 0.2, "rpo_s": 0, "lost": 0, "leader_changes": 0},
        "verdicts": [{"invariant": "rpo", "verdict": "pass", "detail": "12 outcomes kept"}],
        "timeline": {"series": {"paris": [[1, 800], [2, 810]]},
                     "marks": [{"at_s": 1.5, "kind": "fault",
                                "label": "power cut of site witness"}]}}, ONCALL)


def test_approve_prints_the_approval_the_runner_passes(
        server: DrillNodeServer, inventory: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run(capsys, monkeypatch, OPERATOR, "-i", inventory, "drill", "approve",
                       "lose-witness")
    assert code == 0
    text = " ".join(out)
    assert f"by {server.id('operator')}, valid until" in text
    code, out, _ = run(capsys, monkeypatch, OPERATOR, "-i", inventory, "drill", "approve",
                       "lose-witness", "--id-only")
    assert code == 0 and len(out) == 1 and out[0].isdigit()


def test_a_real_run_without_an_approval_is_refused_before_anything(
        server: DrillNodeServer, inventory: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = len(server.store.ledger.items)
    code, _out, err = run(capsys, monkeypatch, ONCALL, "-i", inventory, "drill", "run",
                         "lose-witness")
    assert code == 1
    assert " ".join(err).startswith("tenir: a real drill needs the approval of someone other "
                                    "than its runner")
    assert len(server.store.ledger.items) == before


def test_a_dry_run_on_a_cluster_without_primary_is_refused_and_says_why(
        server: DrillNodeServer, inventory: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(capsys, monkeypatch, ONCALL, "-i", inventory, "drill", "run",
                       "lose-witness", "--dry-run")
    assert code == 1
    assert "Patroni reports no PostgreSQL primary" in " ".join(err)


def test_report_prints_the_record_and_writes_its_page(
        server: DrillNodeServer, inventory: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    stored_drill(server)
    page = tmp_path / "page.html"
    code, out, _ = run(capsys, monkeypatch, AUDITOR, "-i", inventory, "drill", "report", RUN,
                       "--html", str(page))
    assert code == 0
    assert max(len(line) for line in out) <= 80
    assert out[0] == f"drill {RUN} (lose-witness): PASSED"
    text = " ".join(line.strip() for line in out)
    assert f"approved by {server.id('operator')}; run by {server.id('oncall')}" in text
    assert "time to the first message after the fault: 0.2 s (target 5 s); met" in text
    assert text.endswith(f"HTML report written to {page}")
    html = page.read_text(encoding="utf-8")
    assert "Deliveries per second per site" in html and "12 outcomes kept" in html


def test_findings_are_added_and_closed_from_the_command_line(
        server: DrillNodeServer, inventory: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    stored_drill(server)
    code, out, _ = run(capsys, monkeypatch, ONCALL, "-i", inventory, "drill", "finding", "add",
                       RUN, "--criticality", "high", "--description", "witness took 90 s",
                       "--action", "faster boot", "--owner", "ops",
                       "--due", "2027-01-01T00:00:00+00:00")
    assert code == 0 and out[0].startswith(f"finding F1 of drill {RUN}: open")
    code, out, _ = run(capsys, monkeypatch, ONCALL, "-i", inventory, "drill", "finding",
                       "close", RUN, "F1", "--note", "done in 0.4")
    assert code == 0 and out[0].startswith(f"finding F1 of drill {RUN}: done")
    code, out, err = run(capsys, monkeypatch, ONCALL, "-i", inventory, "drill", "finding",
                         "close", RUN, "F7")
    assert code == 1 and "has no finding F7" in " ".join(err)


def test_the_abort_lever_through_the_api(
        server: DrillNodeServer, inventory: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run(capsys, monkeypatch, ONCALL, "-i", inventory, "drill", "abort",
                       "--via-api", "--reason", "real alert coming")
    assert code == 0 and " ".join(x.strip() for x in out).startswith(
        f"abort requested through the API by {server.id('oncall')} at ")
    value = json.loads(server.lever_server.keys[ABORT_KEY][0])
    assert value["reason"] == "real alert coming"


def test_status_json_and_drill_list_say_which_drills_are_overdue(
        server: DrillNodeServer, inventory: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    stored_drill(server)
    code, out, _ = run(capsys, monkeypatch, AUDITOR, "-i", inventory, "status", "--json")
    status = json.loads("\n".join(out))
    assert code == 1  # nothing else of the cluster answers here; overdue drills are no problem
    assert not any("drill" in p for p in status["problems"])
    drills = {d["drill"]: d for d in status["drills"]["drills"]}
    assert drills["lose-witness"]["overdue"] is False
    assert drills["lose-witness"]["last_run"]["id"] == RUN
    assert drills["lose-primary-site"]["overdue"] is True
    _, out, _ = run(capsys, monkeypatch, AUDITOR, "-i", inventory, "status")
    text = "\n".join(out)
    assert "drills (1 overdue):" in text
    assert "lose-primary-site" in text and "never run  OVERDUE" in text
    _code, out, _ = run(capsys, monkeypatch, AUDITOR, "-i", inventory, "drill", "list", "--json")
    rows = {r["drill"]: r for r in json.loads("\n".join(out))["drills"]}
    assert rows["lose-primary-site"]["overdue"] is True
    assert rows["lose-primary-site"]["interval"] == "quarterly"  # from the inventory
    assert rows["switchover-and-back"]["overdue"] is None  # the node has no interval for it


def test_show_fits_80_columns(inventory: str, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run(capsys, monkeypatch, ONCALL, "-i", inventory, "drill", "show",
                       "cut-datacenter-link")
    assert code == 0 and max(len(line) for line in out) <= 80
    assert out[0] == "drill cut-datacenter-link: Cut the link between the two datacenters"


def test_compare_names_every_difference(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    state = {"facts": {"postgres": [["paris-db", "leader", "running"]]},
             "at": datetime.now(UTC).isoformat()}
    a.write_text(json.dumps(state))
    b.write_text(json.dumps(state))
    assert run(capsys, monkeypatch, ONCALL, "drill", "compare", str(a), str(b))[0] == 0
    state["facts"]["postgres"] = [["paris-db", "replica", "streaming"]]
    b.write_text(json.dumps(state))
    code, out, _ = run(capsys, monkeypatch, ONCALL, "drill", "compare", str(a), str(b))
    assert code == 1 and out[0] == "1 difference(s):"
    assert "facts.postgres" in out[1]
