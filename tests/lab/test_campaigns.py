"""Campaigns end to end on the lab: alert nodes of both sites, real SMPP/SMTP/voice simulators,
the campaign store on Patroni/PostgreSQL behind HAProxy. Runs before test_lab.py (file order),
on the session's lab while both sites are up."""

from __future__ import annotations

import json
import re
import signal
import subprocess

import psycopg
import pytest

from cluster.campaign_cli import carriers_report
from cluster.lab import procs
from cluster.lab.access import app_dsn
from cluster.node_api import ApiError
from tests.lab.campaign_kit import (
    api,
    control,
    launch_until_delivered,
    reset_carriers,
    run_campaign,
    wait_completed,
)
from tests.lab.support import REPO, LabHandle

pytestmark = pytest.mark.lab


def test_10000_recipients_from_both_sites_one_final_outcome_no_duplicate(
        lab_env: LabHandle) -> None:
    reset_carriers(lab_env)
    c = run_campaign(lab_env, {"scenario": "demo", "population": 10_000})
    assert c["state"] == "completed", c
    assert (c["recipients"], c["delivered"], c["failed"], c["pending"]) == (10_000, 10_000, 0, 0)
    assert set(c["by_site"]) == {"paris", "marseille"} and min(c["by_site"].values()) > 0
    with psycopg.connect(app_dsn(lab_env.topo, "paris")) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE r.state <> 'pending'), "
            "count(*) FILTER (WHERE a.state = r.state AND a.recipient_id = r.id) "
            "FROM recipients r LEFT JOIN attempts a ON a.reference = r.final_reference "
            "WHERE r.campaign_id = %s", (c["id"],)).fetchone()
    # every recipient has a final state, backed by the attempt it names
    assert row == (10_000, 10_000, 10_000)
    for report in carriers_report(lab_env.topo):
        sms = report["report"]["sms"]
        assert sms["duplicates"] == 0
        assert sms["unique_references"] == sms["received"] > 0


def test_recipients_whose_sms_fails_get_the_email_fallback(lab_env: LabHandle) -> None:
    # SMS refused by the carriers of both sites: no site can take the SMS work over, so every
    # node follows the scenario's fallback to e-mail instead of waiting.
    reset_carriers(lab_env)
    for site in ("paris", "marseille"):
        control(lab_env, site, {"channel": "sms", "mode": "refuse"})
    try:
        c = run_campaign(lab_env, {"scenario": "demo", "population": 400, "batch_size": 20})
    finally:
        reset_carriers(lab_env)
    assert (c["delivered"], c["pending"]) == (400, 0)
    with psycopg.connect(app_dsn(lab_env.topo, "marseille")) as conn:
        by = dict(conn.execute(
            "SELECT final_site || '/' || final_channel, count(*) FROM recipients "
            "WHERE campaign_id = %s GROUP BY 1", (c["id"],)).fetchall())
        refused = conn.execute(
            "SELECT count(DISTINCT recipient_id) FROM attempts WHERE campaign_id = %s "
            "AND channel = 'sms' AND state = 'failed'", (c["id"],)).fetchone()
    assert set(by) <= {"paris/email", "marseille/email"} and sum(by.values()) == 400
    assert refused is not None and refused[0] > 0  # their SMS was tried and refused first


def test_voice_acknowledgement_callback_is_recorded(lab_env: LabHandle) -> None:
    reset_carriers(lab_env)
    c = run_campaign(lab_env, {"scenario": "astreinte", "group": "astreinte"}, timeout=120)
    assert c["state"] == "completed"
    assert (c["recipients"], c["acknowledged"]) == (20, 20)
    with psycopg.connect(app_dsn(lab_env.topo, "paris")) as conn:
        acks = conn.execute(
            "SELECT count(*) FROM acknowledgements k JOIN attempts a USING (reference) "
            "WHERE a.campaign_id = %s AND k.via = 'dtmf' AND a.channel = 'voice'",
            (c["id"],)).fetchone()
    assert acks == (20,)


def test_real_nodes_refuse_bad_input_and_enforce_roles(lab_env: LabHandle) -> None:
    with pytest.raises(ApiError, match="403"):
        api(lab_env, "auditor").call("POST", "/campaigns", {"scenario": "demo", "population": 1})
    with pytest.raises(ApiError, match=r"422.*phone"):
        api(lab_env).call("POST", "/contacts", {"name": "X", "phone": "+33 1"})
    with pytest.raises(ApiError, match=r"4\d\d.*scenario"):
        api(lab_env).call("POST", "/campaigns", {"scenario": "no-such", "population": 1})
    with pytest.raises(ApiError, match=r"4\d\d.*colour"):
        api(lab_env).call("POST", "/groups", {"name": "g", "colour": "red"})


def test_sigterm_drains_a_node_mid_campaign_and_nothing_is_delivered_twice(
        lab_env: LabHandle) -> None:
    pid = lab_env.lab.service_pid("paris-node1", "node")
    assert pid is not None
    start = procs.start_time_of(pid)
    campaign = launch_until_delivered(lab_env, 20_000, 2_000)
    lab_env.lab.signal_service("paris-node1", "node", signal.SIGTERM)
    stopped = procs.wait_gone([(pid, start)], timeout=30)
    assert stopped == [], "the node did not finish draining within 30 s"
    c = wait_completed(lab_env, campaign, timeout=240)
    assert (c["delivered"], c["pending"]) == (20_000, 0)
    delivered_at_carriers = sum(r["report"]["sms"]["delivered"] for r in
                                carriers_report(lab_env.topo))
    assert delivered_at_carriers == 20_000  # each recipient delivered once
    log = lab_env.lab.service_log("paris-node1", "node")
    assert '"message": "stopping (drain)"' in log or "stopping (drain)" in log
    # bring the node back for the tests that follow (systemd leaves a clean exit stopped; a
    # start is what an operator would do, and spares a site.yml run)
    lab_env.lab.start_service("paris-node1", "node")
    lab_env.lab.up(timeout=300)


def test_no_phone_number_in_clear_in_any_node_log(lab_env: LabHandle) -> None:
    phone = re.compile(r"\+?33[1-9]\d{8}|0[67]\d{8}")
    for host in lab_env.topo.hosts_running("alert_nodes"):
        text = lab_env.lab.service_log(host.name, "node")
        assert text, f"{host.name} wrote no log"
        for line in text.splitlines():
            if "{" in line:  # the journal's prefix, then the node's JSON line
                assert phone.search(line[line.index("{"):]) is None, line


def test_cli_launch_wait_json_and_carriers_report(lab_env: LabHandle) -> None:
    tenir = str(REPO / ".venv" / "bin" / "tenir")
    out = subprocess.run([tenir, "campaign", "launch", "--scenario", "demo", "--population",
                          "50", "--wait", "--timeout", "120", "--json"], capture_output=True,
                         text=True, timeout=180, check=True).stdout
    c = json.loads(out)
    assert set(c) == {"id", "scenario", "state", "recipients", "delivered", "acknowledged",
                      "failed", "pending", "started_at", "completed_at", "by_site", "seconds",
                      "average_per_s"}
    assert (c["state"], c["recipients"], c["delivered"], c["pending"]) == (
        "completed", 50, 50, 0)
    shown = json.loads(subprocess.run([tenir, "campaign", "show", str(c["id"]), "--json"],
                                      capture_output=True, text=True, timeout=60,
                                      check=True).stdout)
    assert shown["id"] == c["id"] and shown["completed_at"] == c["completed_at"]
    report = json.loads(subprocess.run([tenir, "carriers", "report", "--json"],
                                       capture_output=True, text=True, timeout=60,
                                       check=True).stdout)
    assert {r["site"] for r in report["carriers"]} == {"paris", "marseille"}
    for r in report["carriers"]:
        assert {"received", "unique_references", "duplicates"} <= set(r["report"]["sms"])
    assert report["cross_site_duplicates"] == {"sms": 0, "email": 0, "voice": 0}
