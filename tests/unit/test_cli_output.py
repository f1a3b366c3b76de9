"""The pieces of the CLI's output: fitting lines to 80 columns, a campaign's duration and average
rate from its own timestamps, plain progress lines at a modest rate, the elapsed-time clock, and
the choice between the bar and plain lines."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from cluster.campaign_view import duration, headline, list_lines, summary_lines
from cluster.progress import CampaignClock, LiveBar, PlainLines, is_live_terminal, open_display
from cluster.textfit import fit, wrap
from tests.fakes.clock import Monotonic

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)


def campaign(done: int, total: int = 20_000, seconds: float | None = None,
             state: str = "running", **extra: Any) -> dict[str, Any]:
    return {"id": 12, "scenario": "demo", "state": state, "recipients": total,
            "delivered": done, "acknowledged": 0, "failed": 0, "pending": total - done,
            "started_at": T0.isoformat(),
            "completed_at": None if seconds is None else (T0 + timedelta(seconds=seconds))
            .isoformat(), "by_site": {"paris": done // 2, "marseille": done - done // 2},
            **extra}


def test_a_long_line_wraps_under_its_indent_and_keeps_quantities_whole() -> None:
    line = "  - " + "the primary fails HAProxy's check after 12.5 s " * 4
    lines = wrap(line)
    assert max(len(part) for part in lines) <= 80
    assert all(part.startswith("      ") for part in lines[1:])
    assert " ".join(part.strip() for part in lines) == line.strip()
    assert not any(part.endswith("12.5") for part in lines)  # "12.5 s" stays on one line
    assert fit(["short", "a\nb"]) == ["short", "a", "b"]


@pytest.mark.parametrize(("seconds", "text"), [
    (0.04, "0.0 s"), (12.14, "12.1 s"), (245, "4 min 05 s"), (3725, "1 h 02 min"),
    (None, "?")])
def test_durations(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_the_average_covers_the_whole_campaign_from_its_timestamps() -> None:
    c = campaign(20_000, seconds=12.0, state="completed")
    assert headline(c, 12.0) == ("campaign 12 completed: 20,000/20,000 (100%) in 12.0 s, "
                                 "average 1,667/s")
    assert summary_lines(c)[0] == headline(c, 12.0)  # seconds from started/completed_at
    running = campaign(5_000)
    assert summary_lines(running, now=T0 + timedelta(seconds=4))[0] == (
        "campaign 12 running: 5,000/20,000 (25%) after 4.0 s, average 1,250/s")


def test_list_rows_fit_80_columns() -> None:
    items = [campaign(1_000_000, total=1_000_000, seconds=4000.0, state="completed",
                      id=123456, scenario="a-very-long-scenario-name", failed=1_234_567)]
    rows = list_lines(items)
    assert max(len(r) for r in rows) <= 80, rows
    assert rows[1].split() == ["123456", "a-very-long~", "completed", "1,000,000/1,000,000",
                               "1", "h", "06", "min", "250/s", "1,234,567"]


def test_plain_lines_come_every_10_s_without_escape_codes() -> None:
    out, ticks = io.StringIO(), Monotonic()
    plain = PlainLines(out, monotonic=ticks)
    for i in range(51):  # a poll every 0.5 s for 25 s
        ticks.now = i * 0.5
        plain.update(campaign(i * 100), ticks.now)
    plain.update(campaign(20_000, seconds=25.5, state="completed"), 25.5)  # the caller's
    lines = out.getvalue().splitlines()
    assert [re.search(r"after (\S+) s", line).group(1) for line in lines] == [  # type: ignore[union-attr]
        "0.0", "10.0", "20.0"]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_the_clock_anchors_once_on_started_at_then_counts_locally() -> None:
    ticks = Monotonic()
    clock = CampaignClock(monotonic=ticks, now=lambda: T0 + timedelta(seconds=30))
    assert clock.seconds(campaign(0)) == 30.0  # followed from the middle of the campaign
    ticks.now = 2.5
    assert clock.seconds(campaign(10)) == 32.5
    assert clock.seconds(campaign(20_000, seconds=31.0, state="completed")) == 31.0


@pytest.mark.parametrize("width", [80, 50])
def test_the_bar_fits_the_terminal(width: int) -> None:
    out = io.StringIO()
    bar = LiveBar(Console(file=out, force_terminal=True, width=width, color_system=None))
    bar.update(campaign(7_000), 2.5)
    bar.update(campaign(20_000, seconds=3.7, state="completed"), 3.7)
    bar.close()
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    last = [line for line in screen.replace("\r", "\n").split("\n") if line.strip()][-3:]
    assert re.match(r"campaign 12 ━+ 100% 20,000/20,000$", last[0]), last
    assert last[1].startswith("completed in 3.7 s, average 5,405/s")
    assert max(len(line) for line in last) <= width


def test_a_pipe_or_a_dumb_terminal_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_display(io.StringIO()), PlainLines)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "dumb")
    assert not is_live_terminal(Tty())
    monkeypatch.setenv("TERM", "xterm-256color")
    assert is_live_terminal(Tty())


# --- tenir lab status -------------------------------------------------------------------------
def _host(name: str, running: bool, services: dict[str, int | None]) -> Any:
    from cluster.lab.lab import HostStatus, ServiceStatus

    return HostStatus(name, "marseille", f"tenir-{name}", "10.213.0.21", True, running,
                      tuple(ServiceStatus(s, s, pid, pid is not None)
                            for s, pid in services.items()))


def test_lab_status_of_a_stopped_lab_says_it_is_down_and_exits_3() -> None:
    from cluster.cli import lab_status_code

    code, sentence = lab_status_code([_host("marseille-db", False, {"etcd": None})])
    assert code == 3 and sentence.startswith("the lab is down")


def test_lab_status_names_what_is_down_and_fits_80_columns() -> None:
    from cluster.cli import host_lines, lab_status_code

    hosts = [_host("marseille-db", True, {"etcd": 123456, "patroni": None, "postgres": None,
                                          "haproxy": 1234567}),
             _host("marseille-carriers-with-a-long-name", True, {"carriers": 42})]
    code, sentence = lab_status_code(hosts)
    assert code == 1 and "patroni@marseille-db" in sentence
    lines = host_lines(hosts)
    assert max(len(line) for line in lines) <= 80
    assert any("patroni DOWN" in line for line in lines)
    assert lab_status_code(hosts[1:])[0] == 0
