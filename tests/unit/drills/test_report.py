"""A drill's record as ``tenir drill report`` shows it: text within 80 columns, and an HTML page
that headless Chromium renders (printed to PDF, its text read back with pdftotext): the
timeline chart with its marked instants, the targets and the measures, the verdicts, the
approver and the runner, the findings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from failover.drills import runner
from failover.drills.report import chart_svg, text_lines, to_html
from tests.fakes.drill_cluster import FakeCluster
from tests.unit.drills.support import context, small

pytestmark = pytest.mark.unit

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--no-pdf-header-footer")


@pytest.fixture(scope="module")
def view() -> dict[str, Any]:
    cluster = FakeCluster()
    drill = small("lose-primary-site")
    result = runner.run(context(cluster, drill, []), drill, approval="3")
    assert result.record is not None
    return {"record": result.record, "seq": 42, "signed_by": "tenir/paris+0a1b2c3d",
            "findings": result.record["findings"]}


def rendered_text(html: str, tmp_path: Path) -> str:
    """The page as headless Chromium lays it out, as text."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed (scripts/install-debian.sh installs it)"
    page, pdf = tmp_path / "drill.html", tmp_path / "drill.pdf"
    page.write_text(html, encoding="utf-8")
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                    f"--print-to-pdf={pdf}", page.as_uri()], capture_output=True, timeout=120,
                   check=True)
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def test_the_html_report_renders_in_headless_chromium(view: dict[str, Any],
                                                     tmp_path: Path) -> None:
    text = rendered_text(to_html(view), tmp_path)
    flat = " ".join(text.split())
    run_id = view["record"]["id"]
    assert f"Failover drill {run_id}" in flat
    assert "Approver: operator:2222. Runner: oncall:1111." in flat
    assert "Timeline" in flat
    assert "Deliveries per second per site" in flat  # the chart's own text, drawn
    assert "paris deliveries/s" in flat and "marseille deliveries/s" in flat
    assert "fault at" in flat and "power cut of site paris" in flat
    assert "PostgreSQL primary paris-db -> marseille-db" in flat
    assert "RTO 5.0 s" in flat  # the target, beside what was measured
    assert "Time to complete the campaign 60.0 s" in flat
    assert "progress pass" in flat and "rpo not_checked" in flat
    assert "Outcome: passed" in flat


def test_the_chart_draws_each_site_and_numbers_each_marked_instant(
        view: dict[str, Any]) -> None:
    svg = chart_svg(view["record"])
    marks = view["record"]["timeline"]["marks"]
    assert svg.count("<polyline") == len(view["record"]["timeline"]["series"]) == 2
    assert svg.count('stroke-dasharray="4,2"') == len(marks) >= 3


def test_the_text_report_fits_80_columns_once_fitted(view: dict[str, Any]) -> None:
    from cluster.textfit import fit

    lines = fit(text_lines(view))
    assert max(len(line) for line in lines) <= 80
    joined = "\n".join(text_lines(view))
    assert "approved by operator:2222; run by oncall:1111" in joined
    assert "time to the first message after the fault:" in joined
    assert "(target 5 s); met" in joined
    assert "signed by tenir/paris+0a1b2c3d (ledger entry 42)" in joined
