"""Failover drills on the lab, through the real CLI as an on-call engineer runs them (issue 10,
"Done when"):

* every shipped drill runs in dry-run mode and changes nothing (``tenir drill snapshot`` before
  and after, ``tenir drill compare``);
* a real run without an approval from another user is refused;
* the preflight refuses a drained site and a lagging standby, saying why;
* every shipped drill runs for real, passes, and leaves a signed record with its measured
  RTO/RPO; the cluster is healthy afterwards, the lost site back as the synchronous standby;
* a stop condition mid-drill (a real campaign launched) heals and records "aborted" with the
  reason; ``tenir drill abort`` from another process does the same;
* the HTML report renders in headless Chromium: timeline, targets, verdicts, approver;
* overdue drills appear in ``tenir status --json`` and the nodes' ``/metrics``.

The lab's nodes sign records with their site's key and the witness site cosigns their
checkpoints, as site.yml deploys them. The runner is the lab's on-call token, the approver its
operator token (the CLI's defaults without ``$TENIR_TOKEN``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cluster.httpjson import request_json
from cluster.lab.access import owner_dsn
from cluster.lab.health import node_url, patroni_view
from cluster.node_api import ApiError
from replication.appdb import APP_DB
from replication.appdb import dsn as make_dsn
from tests.lab.campaign_kit import api
from tests.lab.support import INVENTORY, REPO, LabHandle

pytestmark = pytest.mark.lab
TENIR = str(REPO / ".venv" / "bin" / "tenir")
KINDS = ("lose-witness", "carrier-outage", "switchover-and-back", "lose-standby-site",
         "cut-datacenter-link", "lose-primary-site")
RUNS: dict[str, str] = {}  # drill kind -> run id of its passed run


def tenir(*args: str, token: str | None = None, timeout: float = 1200,
          check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TENIR_TOKEN"}
    if token is not None:
        env["TENIR_TOKEN"] = token
    done = subprocess.run([TENIR, "-i", str(INVENTORY), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    print(f"$ tenir {' '.join(args)}  -> {done.returncode}\n{done.stdout}{done.stderr}")
    if check:
        assert done.returncode == 0, done.stderr
    return done


def approval(kind: str) -> str:
    return tenir("drill", "approve", kind, "--id-only", check=True).stdout.strip()


def run_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return dict(json.loads(done.stdout))


@pytest.fixture(scope="module")
def drills_lab(lab_env: LabHandle, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[LabHandle]:
    """The lab as site.yml deploys it: the nodes sign records with their site's key and the
    witness cosigns the ledger's checkpoints (ansible/evidence_keys.yml, role tenir_witness)."""
    lab_env.lab.up(timeout=600)
    os.environ["TENIR_DRILL_DIR"] = str(tmp_path_factory.mktemp("drill-runs"))
    try:
        yield lab_env
    finally:
        lab_env.lab.up(timeout=600)


def _healthy(lab: LabHandle, within_s: float = 60.0) -> dict[str, Any]:
    """``tenir status`` says the cluster is whole within ``within_s`` (a healed standby takes a
    few seconds to stream again after an aborted drill's heal)."""
    deadline = time.monotonic() + within_s
    while True:
        done = tenir("status", "--json")
        status = json.loads(done.stdout)
        if done.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    assert done.returncode == 0, status["problems"]
    return dict(status)


# --- the tests, in the order they run ------------------------------------------------------

def test_overdue_drills_appear_in_status_and_metrics(drills_lab: LabHandle) -> None:
    status = json.loads(tenir("status", "--json").stdout)
    drills = {d["drill"]: d for d in status["drills"]["drills"]}
    assert set(drills) == set(KINDS)
    assert all(d["overdue"] for d in drills.values())  # a new lab has run none
    host = drills_lab.topo.hosts_running("alert_nodes")[0]
    wanted = [f'tenir_drill_overdue{{drill="{kind}"}} 1' for kind in KINDS]
    deadline = time.monotonic() + 75  # the node refreshes its drill metrics every minute
    while True:
        _, text = request_json("GET", f"{node_url(drills_lab.topo, host)}/metrics", timeout=10)
        missing = [line for line in wanted if line not in str(text)]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    assert missing == [], str(text)[-2000:]


@pytest.mark.parametrize("kind", KINDS)
def test_a_dry_run_changes_nothing(drills_lab: LabHandle, kind: str, tmp_path: Path) -> None:
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    tenir("drill", "snapshot", str(before), check=True)
    done = tenir("drill", "run", kind, "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    assert run_json(done)["outcome"] == "dry-run"
    assert "dry run: would" in done.stderr
    tenir("drill", "snapshot", str(after), check=True)
    compared = tenir("drill", "compare", str(before), str(after))
    assert compared.returncode == 0, compared.stdout


def test_a_real_run_needs_an_approval_from_another_user(drills_lab: LabHandle) -> None:
    secrets = drills_lab.layout.load_secrets()
    assert secrets is not None
    oncall = secrets["token_oncall"]
    done = tenir("drill", "run", "lose-witness", token=oncall)
    assert done.returncode == 1 and "needs the approval of someone other" in done.stderr
    mine = tenir("drill", "approve", "lose-witness", "--id-only", token=oncall,
                 check=True).stdout.strip()
    done = tenir("drill", "run", "lose-witness", "--approval", mine, token=oncall)
    assert done.returncode == 1 and "who runs the drill" in " ".join(done.stderr.split())
    _healthy(drills_lab)


def test_preflight_refuses_a_drained_site_and_says_why(drills_lab: LabHandle) -> None:
    tenir("site", "drain", "marseille", check=True)
    try:
        done = tenir("drill", "run", "lose-witness", "--approval", approval("lose-witness"))
        assert done.returncode == 1
        assert "no_site_drained: site marseille is drained" in " ".join(done.stderr.split())
    finally:
        tenir("site", "undrain", "marseille", check=True)


def test_preflight_refuses_a_lagging_standby_and_says_why(drills_lab: LabHandle) -> None:
    """The synchronous standby falls behind in replay as a busy standby does: a read there holds
    a table that the primary then truncates, so replay waits on it (up to
    max_standby_streaming_delay, 30 s) while rows keep coming. Patroni reports the replay lag,
    and the drill refuses, naming it. (Pausing replay does not hold: Patroni resumes it.)"""
    topo = drills_lab.topo
    view = patroni_view(topo)
    assert view is not None and view.sync_standby is not None and view.primary is not None
    standby = topo.hosts[view.sync_standby]
    secrets = drills_lab.layout.load_secrets()
    assert secrets is not None
    on_standby = make_dsn(str(standby.address), 5432, "postgres", secrets["superuser"],
                          APP_DB)  # the database the owner writes the table into
    on_primary = owner_dsn(topo, topo.hosts[view.primary].site)
    with psycopg.connect(on_primary, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS drill_lag_probe (x text)")
        conn.execute("INSERT INTO drill_lag_probe VALUES ('seen by the standby')")
    stop = threading.Event()
    try:
        with psycopg.connect(on_standby) as reader:  # a transaction left open on the standby
            deadline = time.monotonic() + 30
            while True:  # the table has reached the standby
                try:
                    reader.execute("SELECT count(*) FROM drill_lag_probe").fetchone()
                    break
                except psycopg.errors.UndefinedTable:
                    reader.rollback()
                    assert time.monotonic() < deadline, "the table never reached the standby"
                    time.sleep(0.2)
            with psycopg.connect(on_primary, autocommit=True) as conn:
                conn.execute("TRUNCATE drill_lag_probe")  # replay must wait for the reader

            def keep_writing() -> None:
                with psycopg.connect(on_primary, autocommit=True) as writer:
                    while not stop.wait(0.2):
                        writer.execute("INSERT INTO drill_lag_probe SELECT repeat('x', 1000) "
                                       "FROM generate_series(1, 500)")

            writer = threading.Thread(target=keep_writing, daemon=True)
            writer.start()
            deadline = time.monotonic() + 20
            while True:
                lagging = patroni_view(topo)
                if lagging is not None and (lagging.max_lag_bytes or 0) > 0:
                    break
                assert time.monotonic() < deadline, "Patroni never reported the standby behind"
                time.sleep(0.5)
            done = tenir("drill", "run", "lose-witness", "--approval", approval("lose-witness"))
            stop.set()
            writer.join(10)
            reader.rollback()
        assert done.returncode == 1
        text = " ".join(done.stderr.split())
        assert f"the synchronous standby {view.sync_standby} lags" in text, text
    finally:
        stop.set()
        with psycopg.connect(on_primary, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS drill_lag_probe")


@pytest.mark.parametrize("kind", KINDS)
def test_every_drill_passes_and_leaves_a_record(drills_lab: LabHandle, kind: str) -> None:
    view = patroni_view(drills_lab.topo)
    assert view is not None and view.primary is not None
    primary_site = drills_lab.topo.hosts[view.primary].site
    done = tenir("drill", "run", kind, "--approval", approval(kind), "--json")
    result = run_json(done)
    # the reason first: CI shows only the head of a long message
    assert done.returncode == 0 and result["outcome"] == "passed", (
        f"{result['outcome']}: {result.get('reason')}\n{done.stderr[-4000:]}")
    assert result["seq"] is not None  # signed and in the ledger
    report = json.loads(tenir("drill", "report", result["run_id"], "--json",
                              "--html", os.devnull, check=True).stdout)
    record = report["record"]
    assert record["measured"]["rto_s"] is not None
    assert record["measured"]["rpo_s"] == 0 and record["measured"]["lost"] == 0
    assert {v["invariant"]: v["verdict"] for v in record["verdicts"]}["recipients"] == "pass"
    RUNS[kind] = result["run_id"]
    status = _healthy(drills_lab)
    pg = status["postgres"]
    standby_site = drills_lab.topo.hosts[pg["sync_standby"]].site
    if kind == "lose-primary-site":  # the lost site is back as the synchronous standby
        assert standby_site == primary_site
    elif kind == "switchover-and-back":
        assert drills_lab.topo.hosts[pg["primary"]].site == primary_site
    elif kind == "lose-standby-site":
        assert standby_site != primary_site


@contextlib.contextmanager
def _drill_in_background(kind: str) -> Iterator[subprocess.Popen[str]]:
    """``tenir drill run KIND`` in another process. If the test fails while the drill still
    runs, the drill is aborted and awaited: left running, it kept its fault on the lab and the
    next drill's preflight refused (CI on a19c5f4)."""
    proc = subprocess.Popen([TENIR, "-i", str(INVENTORY), "drill", "run", kind,
                             "--approval", approval(kind), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            tenir("drill", "abort", "--reason", "the lab test failed", timeout=120)
            try:
                proc.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def _wait_for_fault(drills_lab: LabHandle, proc: subprocess.Popen[str], seen: Any) -> None:
    deadline = time.monotonic() + 300
    while not seen():
        assert proc.poll() is None, "the drill ended before its fault"
        assert time.monotonic() < deadline, "the fault never came"
        time.sleep(0.5)


def _standby_site_down(drills_lab: LabHandle, site: str) -> Any:
    def seen() -> bool:  # every machine of it: a node still up there is cut from its store
        return all(not h.machine_running for h in drills_lab.lab.status() if h.site == site)

    return seen


def _launch_real_alert(drills_lab: LabHandle) -> int:
    """As an operator would: "retry later" from every node (the primary waits for Patroni to
    drop the lost synchronous standby before it commits) is tried again, for a minute."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return int(api(drills_lab).call("POST", "/campaigns", {"scenario": "astreinte",
                                                                    "group": "astreinte"})["id"])
        except ApiError as exc:
            if exc.status != 503 or time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_a_stop_condition_mid_drill_heals_and_records_aborted(drills_lab: LabHandle) -> None:
    view = patroni_view(drills_lab.topo)
    assert view is not None and view.sync_standby is not None
    standby_site = drills_lab.topo.hosts[view.sync_standby].site
    with _drill_in_background("lose-standby-site") as proc:
        _wait_for_fault(drills_lab, proc, _standby_site_down(drills_lab, standby_site))
        real = _launch_real_alert(drills_lab)
        out, err = proc.communicate(timeout=900)
    print(err)
    result = json.loads(out)
    assert proc.returncode == 1 and result["outcome"] == "aborted", (
        f"{result['outcome']}: {result.get('reason')}\n{err[-4000:]}")
    assert result["reason"].startswith(f"real campaign {real} (astreinte, priority 1) was "
                                       "launched during the drill")
    report = json.loads(tenir("drill", "report", result["run_id"], "--json", "--html",
                              os.devnull, check=True).stdout)
    assert report["record"]["outcome"] == "aborted"
    assert report["record"]["reason"] == result["reason"]
    _healthy(drills_lab)


def test_drill_abort_from_another_process_heals_and_records_aborted(
        drills_lab: LabHandle) -> None:
    from chaos.faults import chaos_rules_left

    with _drill_in_background("cut-datacenter-link") as proc:
        _wait_for_fault(drills_lab, proc, lambda: bool(chaos_rules_left(drills_lab.lab)))
        tenir("drill", "abort", "--reason", "the lab test pulls the lever", check=True)
        out, err = proc.communicate(timeout=900)
    print(err)
    result = json.loads(out)
    assert proc.returncode == 1 and result["outcome"] == "aborted", (
        f"{result['outcome']}: {result.get('reason')}\n{err[-4000:]}")
    assert result["reason"].endswith(": the lab test pulls the lever")
    assert chaos_rules_left(drills_lab.lab) == []
    _healthy(drills_lab)


def test_the_html_report_renders_in_headless_chromium(drills_lab: LabHandle,
                                                      tmp_path: Path) -> None:
    run_id = RUNS.get("lose-primary-site") or next(iter(RUNS.values()))
    page, pdf = tmp_path / "drill.html", tmp_path / "drill.pdf"
    tenir("drill", "report", run_id, "--html", str(page), check=True)
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed (scripts/install-debian.sh installs it)"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--no-pdf-header-footer",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--print-to-pdf={pdf}",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    text = " ".join(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True,
                                   text=True, check=True).stdout.split())
    assert "Timeline" in text and "Deliveries per second per site" in text
    assert "fault at" in text and "heal at" in text
    assert "RTO 25.0 s" in text  # the lab's target for losing the primary's site
    assert "recipients pass" in text and "rpo pass" in text
    secrets = drills_lab.layout.load_secrets()
    assert secrets is not None
    # an identity is the API user's name (per-user tokens): the lab's operator and on-call
    assert "Approver: lab-operator" in text and "Runner: lab-oncall" in text
