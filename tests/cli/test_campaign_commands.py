"""``tenir campaign show|list|wait|launch`` against an in-process node app on the in-memory
store: the duration and the average rate over the whole campaign, lines within 80 columns, and
exit 1 when a wait gives up or no node answers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from cluster import cli
from tests.api.conftest import AUDITOR, OPERATOR
from tests.cli.support import NodeServer, write_inventory

pytestmark = pytest.mark.unit


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[NodeServer]:
    monkeypatch.setenv("TENIR_TOKEN", OPERATOR)
    with NodeServer() as s:
        s.seed_scenario()
        s.seed_scenario("un-scenario-au-nom-tres-long")
        yield s


@pytest.fixture
def inventory(server: NodeServer, tmp_path: Path) -> str:
    return str(write_inventory(tmp_path, server.port))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_show_of_a_running_then_completed_campaign(
        server: NodeServer, inventory: str, capsys: pytest.CaptureFixture[str]) -> None:
    server.api("POST", "/campaigns", {"scenario": "alerte", "population": 1000,
                                      "batch_size": 100})
    server.advance(1, 3)
    code, out, err = run(capsys, "-i", inventory, "campaign", "show", "1")
    assert (code, err) == (0, [])
    assert re.fullmatch(r"campaign 1 running: 300/1,000 \(30%\) after \d+\.\d s, average "
                        r"[\d,]+/s", out[0]), out
    assert out[1:] == ["  delivered 300, acknowledged 0, failed 0, pending 700",
                       "  delivered by site: marseille 100, paris 200"]
    server.advance(1, 7)
    c = server.api("GET", "/campaigns/1")
    code, out, _ = run(capsys, "-i", inventory, "campaign", "show", "1", "--json")
    shown = json.loads("\n".join(out))
    assert code == 0 and shown["state"] == "completed"
    # the average over the whole campaign: recipients / (completed_at - started_at)
    seconds = (datetime.fromisoformat(c["completed_at"])
               - datetime.fromisoformat(c["started_at"])).total_seconds()
    assert shown["seconds"] == round(seconds, 3) and seconds > 0
    assert shown["average_per_s"] == round(1000 / seconds, 1)


def test_list_fits_80_columns(
        server: NodeServer, inventory: str, capsys: pytest.CaptureFixture[str]) -> None:
    server.api("POST", "/campaigns", {"scenario": "alerte", "population": 200,
                                      "batch_size": 100})
    server.api("POST", "/campaigns", {"scenario": "un-scenario-au-nom-tres-long",
                                      "population": 100_000, "batch_size": 10_000})
    server.advance(1, 2)
    code, out, _ = run(capsys, "-i", inventory, "campaign", "list")
    assert code == 0
    assert re.match(r" +id +scenario +state +done +time +average +failed$", out[0]), out
    rows = {line.split()[0]: line for line in out[1:]}
    assert re.match(r" +2 +un-scenario~ +running +0/100,000 +\d", rows["2"]), rows
    assert re.match(r" +1 +alerte +completed +200/200 +\d+\.\d s +[\d,]+/s +0$", rows["1"])
    assert len(out) == 3 and max(len(line) for line in out) <= 80, out


def test_wait_that_gives_up_exits_1_and_says_the_campaign_goes_on(
        server: NodeServer, inventory: str, capsys: pytest.CaptureFixture[str]) -> None:
    server.api("POST", "/campaigns", {"scenario": "alerte", "population": 500})
    code, out, err = run(capsys, "-i", inventory, "campaign", "wait", "1", "--timeout", "0.2")
    assert code == 1
    assert out[0].startswith("campaign 1 running: 0/500 (0%) after ")
    assert err[-1] == "tenir: campaign 1 is still running after 0 s; it goes on (tenir " \
        "campaign wait 1)"
    # a pipe gets plain lines: the first poll, nothing more within 10 s
    assert [line for line in err if line.startswith("campaign 1 running")] == err[:-1]
    assert len(err) == 2 and not any("\r" in line or "\x1b" in line for line in err)


def test_launch_wait_that_gives_up_exits_1_too(
        server: NodeServer, inventory: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-i", inventory, "campaign", "launch", "--scenario", "alerte",
                         "--population", "300", "--wait", "--timeout", "0.2", "--json")
    assert code == 1
    assert json.loads("\n".join(out))["state"] == "running"
    assert err == ["tenir: campaign 1 is still running after 0 s; it goes on (tenir campaign "
                   "wait 1)"]


def test_no_node_answering_exits_1_naming_the_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENIR_TOKEN", AUDITOR)
    inventory = str(write_inventory(tmp_path))  # every node's port is 9: nothing answers
    code, out, err = run(capsys, "-i", inventory, "campaign", "list")
    assert (code, out) == (1, [])
    assert err[0].startswith("tenir: no alert node answered: https://127.0.0.1:9/api/v1/"
                             "campaigns: no answer")
    assert max(len(line) for line in err) <= 80, err


def test_a_refusal_names_the_field_and_the_node(
        server: NodeServer, inventory: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-i", inventory, "campaign", "launch", "--scenario", "absent",
                         "--population", "5")
    assert (code, out) == (1, [])
    assert " ".join(line.strip() for line in err) == (
        f"tenir: POST /campaigns: 422 unknown scenario 'absent' (field scenario; node "
        f"https://127.0.0.1:{server.port})")
    assert max(len(line) for line in err) <= 80
