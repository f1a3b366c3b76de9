"""The live view: step n/N, elapsed time, each check's state, the campaign, deliveries/s per
site, PostgreSQL and the leader, the watchdog's last sentences, a stop; within 80 columns on a
terminal (rich, redrawn in place), plain lines elsewhere (a line per step, a status line every
10 s)."""

from __future__ import annotations

import io

import pytest

from failover.drills.live import LiveView, PlainView, status_lines
from failover.drills.preflight import Check
from failover.drills.session import Roles, Session
from failover.drills.stops import Sample
from tests.fakes.drill_cluster import SITES, FakeCluster
from tests.unit.drills.support import settings, small

pytestmark = pytest.mark.unit


class Seen:
    """What a view reads of the monitor."""

    def __init__(self) -> None:
        self.samples = [Sample(at=1.0, done=100, delivered_by_site={"paris": 60,
                                                                     "marseille": 40},
                               state="running", primary="marseille-db", sync_standby=None,
                               leader="marseille-db")]

    def rates(self) -> dict[str, float]:
        return {"marseille": 812.4, "paris": 0.0}

    def watchdog_sentences(self, n: int = 3) -> list[str]:
        return ["moved 4 batches of paris-node1 and paris-node2 to marseille (their site has "
                "no live member; PostgreSQL primary marseille-db)"][-n:]


def session() -> Session:
    cluster = FakeCluster()
    s = Session(small("lose-primary-site"), sites=SITES, roles=Roles("paris", "marseille",
                                                                      "witness"),
                cluster=cluster, platform=cluster, api=cluster, settings=settings())
    s.step = "wait for the first message delivered after the fault"
    s.campaign_id = 12
    s.checks["quorum_has_spare"] = Check("quorum_has_spare", True, "")
    s.checks["sync_standby_streaming"] = Check("sync_standby_streaming", False, "")
    return s


def test_the_status_says_step_checks_rates_postgres_and_the_watchdog() -> None:
    lines = status_lines(session(), Seen(), 83.0)  # type: ignore[arg-type]
    assert lines[0] == ("drill lose-primary-site  1:23  step 4/7: wait for the first message "
                        "delivered after the fault")
    assert lines[1] == "checks: quorum_has_spare ok  sync_standby_streaming FAIL"
    assert lines[2] == "campaign 12: 100 done (running)"
    assert lines[3] == "deliveries/s: marseille 812, paris 0"
    assert lines[4] == ("postgres: primary marseille-db, standby none; coordination leader "
                        "marseille-db")
    assert lines[5].startswith("watchdog: moved 4 batches of paris-node1")


def test_on_a_terminal_the_view_fits_80_columns() -> None:
    out = io.StringIO()
    s = session()
    view = LiveView(s, out)
    view.update(Seen())  # type: ignore[arg-type]
    s.stop.set("the lever was pulled", "lever")
    view.update(Seen())  # type: ignore[arg-type]
    view.close()
    text = out.getvalue()
    assert "\x1b[" in text  # redrawn in place
    plain = [line for line in _strip(text).splitlines() if line.strip()]
    assert max(len(line) for line in plain) <= 80
    assert any("STOPPING: the lever was pulled" in line for line in plain)


def test_in_a_pipe_plain_lines_a_step_at_a_time() -> None:
    out = io.StringIO()
    s = session()
    now = [0.0]
    view = PlainView(s, out, every_s=10.0, monotonic=lambda: now[0])
    view.update(Seen())  # type: ignore[arg-type]
    first = out.getvalue().splitlines()
    assert first[0].startswith("drill lose-primary-site  0:00  step 4/7")
    now[0] = 3.0
    view.update(Seen())  # type: ignore[arg-type]
    assert out.getvalue().splitlines() == first  # same step, under 10 s: nothing new
    s.step = "wait until the campaign completes"
    now[0] = 11.0
    view.update(Seen())  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    assert "step 5/7: wait until the campaign completes" in lines[len(first)]
    assert all(len(line) <= 80 and "\x1b" not in line for line in lines)


def _strip(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "\n", text)


