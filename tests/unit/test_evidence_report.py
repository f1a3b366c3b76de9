"""The report of a verified bundle with a synthetic drill: JSON, HTML, and a PDF rendered by
WeasyPrint, turned into PNG pages (pdftoppm) and its text (pdftotext) checked for the drill's
timeline, targets, verdicts and the regulation clauses."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from failover.evidence import bundle as bundle_mod
from failover.evidence.render import render
from failover.evidence.report import build
from failover.evidence.verify import verify_bundle
from tests.evidence_kit import export, fill, make_kit
from tests.fakes.memory_ledger import MemoryLedger

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("report")
    ledger = MemoryLedger()
    kit = make_kit(ledger, tmp)

    async def go() -> Path:
        await fill(ledger, kit)
        await ledger.append("postgres.sync_lost", "no synchronous standby", actor="node:x",
                            node="marseille-node1", site="marseille")
        await ledger.append("postgres.sync_restored", "paris-db is the synchronous standby",
                            actor="node:x", node="marseille-node1", site="marseille")
        await kit.checkpointer.once()
        return await export(ledger, kit, tmp / "bundle")

    path = asyncio.run(go())
    b = bundle_mod.read(path)
    result = verify_bundle(b, trusted=kit.vkeys)
    assert result.ok, result.problems
    return build(b, result)


def test_the_json_report_holds_programme_drill_incidents_and_exposure(
        report: dict[str, object]) -> None:
    r: dict = report  # type: ignore[type-arg]
    assert [p["status"].split(" (")[0] for p in r["programme"]] == ["performed",
                                                                     "planned"]
    drill = r["drills"][0]
    assert drill["rto_met"] and drill["rpo_met"] and drill["measured"]["rto_s"] == 21.4
    assert "<svg" in drill["timeline_svg"] and "PostgreSQL primary promoted" in \
        drill["timeline_svg"]
    assert [e["kind"] for e in r["incidents"]["events"]].count("watchdog.move") == 5
    assert r["rpo_exposure"]["recorded"] and len(r["rpo_exposure"]["intervals"]) == 1
    assert r["checkpoint"]["size"] == 16 and r["verification"]["ok"]
    assert r["findings"][0]["corrective_action"]["status"] == "open"


def test_the_pdf_renders_and_reads_back(report: dict[str, object], tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render(report, "pdf"))  # type: ignore[arg-type]
    subprocess.run(["pdftoppm", "-png", "-r", "50", str(pdf), str(tmp_path / "page")],
                   check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2 and all(p.stat().st_size > 5000 for p in pages)
    raw = subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    text = " ".join(raw.split())  # table cells wrap their lines
    for expected in ("Timeline", "power cut: SIGKILL every process of paris",
                     "RTO target 60 s", "RTO measured 21.4 s",
                     "no acknowledged outcome lost (RPO 0)", "pass",
                     "NIS 2 Art. 21(2)(c)", "NIS 2 Art. 21(2)(f)", "CIR 2024/2690 §4.1.4",
                     "CIR 2024/2690 §4.2.6", "CIR 2024/2690 §4.3.4", "CIR 2024/2690 §6.5.2(c)",
                     "ISO 22301 §8.5", "pre-stage the", "tenir.invalid/lab/ledger",
                     "Bundle verified"):
        assert expected in text, expected


def test_the_html_escapes_what_records_carry(report: dict[str, object]) -> None:
    import copy

    r = copy.deepcopy(report)
    r["drills"][0]["scope"]["description"] = "<script>alert(1)</script>"  # type: ignore[index]
    html = render(r, "html").decode()  # type: ignore[arg-type]
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html
