"""``tenir campaign launch --wait``'s progress, run as the real command against an in-process
node app on the in-memory store: on an 80-column (and a 50-column) terminal driven by tmux, one
bar redrawn in place that never wraps, and at the end the campaign's duration and its average
rate over the whole campaign; in a pipe, a few plain lines with no carriage return and no escape
code."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.cli.support import TENIR, NodeServer, Tmux, cli_env, write_inventory

pytestmark = pytest.mark.integration

RECIPIENTS, BATCH = 2000, 100
BAR = re.compile(r"^campaign 1 \S*━")


@pytest.fixture
def server() -> Iterator[NodeServer]:
    with NodeServer() as s:
        s.seed_scenario()
        yield s


def launch_argv(inventory: Path) -> list[str]:
    return [str(TENIR), "-i", str(inventory), "campaign", "launch", "--scenario", "alerte",
            "--population", str(RECIPIENTS), "--batch-size", str(BATCH), "--wait"]


def expected_average(server: NodeServer) -> tuple[str, str]:
    """The average rate and duration the API's timestamps give for campaign 1, formatted."""
    c = server.api("GET", "/campaigns/1")
    seconds = (datetime.fromisoformat(c["completed_at"])
               - datetime.fromisoformat(c["started_at"])).total_seconds()
    return f"{RECIPIENTS / seconds:,.0f}/s", f"{seconds:.1f} s"


def wait_launched(server: NodeServer) -> None:
    for _ in range(200):
        if server.api("GET", "/campaigns")["items"]:
            return
        time.sleep(0.05)
    raise AssertionError("the CLI launched no campaign")


def finish_slowly(server: NodeServer) -> None:
    """The rest of the campaign: a fast stretch, then a slow last batch, so that the rate of
    the last poll is far from the campaign's average."""
    server.advance(1, RECIPIENTS // BATCH - 6)
    server.advance(1, 1, pause_s=1.5)
    assert server.advance(1, 1) == 1


@pytest.mark.parametrize("width", [80, 50])
def test_the_bar_redraws_in_place_within_the_terminal_and_ends_with_the_average(
        server: NodeServer, tmp_path: Path, width: int) -> None:
    inventory = write_inventory(tmp_path, server.port)
    tmux = Tmux(width)
    try:
        tmux.run(launch_argv(inventory), cli_env())
        wait_launched(server)
        assert server.advance(1, 4, pause_s=0.3) == 4
        screen = tmux.wait_for("400/2,000")
        bars = [line for line in screen if BAR.match(line)]
        assert len(bars) == 1, screen  # redrawn in place, not one line per poll
        assert re.match(r"campaign 1 \S*━.* 20% +400/2,000$", bars[0]), bars
        detail = "failed 0, acknowledged 0" if width == 80 else ""  # cut with "…" at 50
        assert any(re.match(rf"running for \d\.\d s, average [\d,]+/s; {detail}", line)
                   for line in screen), screen
        assert any(line.startswith("delivered by site: marseille 200, paris 200")
                   for line in screen), screen
        assert max(len(line) for line in screen) <= width, screen  # -J: a wrap would show

        finish_slowly(server)
        screen = tmux.wait_for("EXIT=")
        assert "EXIT=0" in screen, screen
        assert max(len(line) for line in screen) <= width, screen
        assert len([line for line in screen if BAR.match(line)]) == 1, screen
        rate, seconds = expected_average(server)
        text = " ".join(screen)
        assert re.search(rf"campaign 1 completed: 2,000/2,000 \(100%\) in +{seconds}, +average "
                         rf"+{rate}", text), (rate, seconds, screen)
    finally:
        tmux.close()


def test_in_a_pipe_progress_is_a_few_plain_lines(server: NodeServer, tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, server.port)
    cli = subprocess.Popen(launch_argv(inventory), env=cli_env(TERM="xterm-256color"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # bytes: text
    try:                                                        # mode would turn \r into \n
        wait_launched(server)
        assert server.advance(1, 4, pause_s=0.3) == 4
        finish_slowly(server)
        raw_out, raw_err = cli.communicate(timeout=30)
        out, err = raw_out.decode(), raw_err.decode()
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == 0, err
    assert "\r" not in err and "\x1b" not in err, repr(err)
    progress = err.splitlines()
    # the first poll, then one line per 10 s at most: this campaign lasts about 3 s
    assert 1 <= len(progress) <= 2, progress
    assert all(re.match(r"campaign 1 running: [\d,]+/2,000 \(\d+%\) after [\d.]+ s, average",
                        line) for line in progress), progress
    rate, seconds = expected_average(server)
    assert out.splitlines() == [
        f"campaign 1 completed: 2,000/2,000 (100%) in {seconds}, average {rate}",
        "  delivered 2,000, acknowledged 0, failed 0, pending 0",
        "  delivered by site: marseille 1,000, paris 1,000",
    ]
