"""Failover of alert nodes on the lab, mid-campaign, with the real coordination service: a node
killed with SIGKILL loses its membership, the watchdog moves its batches, the other nodes finish
them, every recipient is delivered once at the deduplicating carriers."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest

from chaos.faults import CarrierMisbehaves, IsolateSite, chaos_rules_left, faulted
from cluster.campaign_cli import carriers_report, cross_site_duplicates, references_by_site
from cluster.httpjson import request_json
from cluster.lab.access import app_dsn
from cluster.lab.health import carriers_control_url, patroni_view
from tests.lab.campaign_kit import launch_until_delivered, wait_completed
from tests.lab.support import LabHandle

pytestmark = pytest.mark.lab


def test_kill_9_of_an_alert_node_mid_campaign_loses_nothing_and_sends_nothing_twice(
        lab_env: LabHandle) -> None:
    victim = next(r for r in lab_env.layout.load_state().records
                  if r.host == "paris-node1" and r.service == "node")
    campaign = launch_until_delivered(lab_env, 10_000, 1_500)
    killed_at = time.time()
    os.kill(victim.pid, signal.SIGKILL)
    c = wait_completed(lab_env, campaign, timeout=180)
    assert (c["recipients"], c["delivered"], c["failed"], c["pending"]) == (10_000, 10_000, 0, 0)
    # No carrier delivered a reference twice (each deduplicates what it received). What the dead
    # paris node had in flight and a marseille node resent went through marseille's own carrier:
    # such duplicates are bounded by what the dead node had in flight, counted and reported.
    for r in carriers_report(lab_env.topo):
        assert r["report"]["sms"]["delivered"] == r["report"]["sms"]["unique_references"]
    refs = references_by_site(lab_env.topo, "sms")
    recipients = {int(ref.split(":")[1]) for site in refs.values() for ref in site
                  if ref.startswith(f"{campaign}:")}
    assert len(recipients) == 10_000
    cross = cross_site_duplicates(lab_env.topo)["sms"]
    in_flight_bound = 8 * 100  # the dead node's max_batches x batch_size
    print(f"references delivered by both sites' carriers after the kill: {cross} "
          f"(bound {in_flight_bound})")
    assert cross <= in_flight_bound
    with psycopg.connect(app_dsn(lab_env.topo, "marseille")) as conn:
        moves = conn.execute(
            "SELECT extract(epoch FROM at), sentence, details FROM events "
            "WHERE kind = 'watchdog.move' AND at >= to_timestamp(%s) ORDER BY id",
            (killed_at,)).fetchall()
        by_node = dict(conn.execute(
            "SELECT node, count(*) FROM attempts WHERE campaign_id = %s GROUP BY node",
            (campaign,)).fetchall())
    assert moves, "the watchdog recorded no move of the dead node's batches"
    first_move_at, sentence, details = moves[0]
    assert "paris-node1" in details["moved"]
    print(f"watchdog moved paris-node1's batches {float(first_move_at) - killed_at:.1f} s after "
          f"the kill: {sentence}")
    assert {"paris-node2", "marseille-node1", "marseille-node2"} <= set(by_node)
    lab_env.lab.up(timeout=120)  # the node comes back for the tests that follow


def _primary_site(lab: LabHandle) -> str:
    view = patroni_view(lab.topo)
    assert view is not None and view.primary is not None
    return lab.topo.hosts[view.primary].site


def test_losing_the_site_without_the_primary_mid_campaign(lab_env: LabHandle) -> None:
    lost = next(s.name for s in lab_env.topo.datacenter_sites
                if s.name != _primary_site(lab_env))
    survivor = next(s.name for s in lab_env.topo.datacenter_sites if s.name != lost)
    campaign = launch_until_delivered(lab_env, 20_000, 3_000)
    killed_at = time.time()
    lab_env.lab.kill_site(lost)
    dsn = app_dsn(lab_env.topo, survivor)
    resumed = None
    deadline = time.monotonic() + 30
    while resumed is None and time.monotonic() < deadline:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT extract(epoch FROM min(sent_at)) FROM attempts WHERE "
                               "campaign_id = %s AND site = %s AND sent_at > to_timestamp(%s)",
                               (campaign, survivor, killed_at)).fetchone()
        resumed = float(row[0]) if row and row[0] is not None else None
        time.sleep(0.1)
    assert resumed is not None, "no delivery recorded by the surviving site after the kill"
    print(f"next delivery recorded by {survivor} {resumed - killed_at:.2f} s after {lost} died")
    assert resumed - killed_at <= 5.0
    c = wait_completed(lab_env, campaign)
    assert (c["delivered"], c["failed"], c["pending"]) == (20_000, 0, 0)
    lab_env.lab.up(timeout=180)


def test_losing_the_primary_site_mid_campaign_keeps_every_recorded_outcome(
        lab_env: LabHandle) -> None:
    lost = _primary_site(lab_env)
    survivor = next(s.name for s in lab_env.topo.datacenter_sites if s.name != lost)
    campaign = launch_until_delivered(lab_env, 20_000, 3_000)
    dsn = app_dsn(lab_env.topo, survivor)
    with psycopg.connect(dsn, autocommit=True) as conn:  # read from the primary, committed
        before = dict(conn.execute("SELECT reference, state FROM attempts WHERE campaign_id = %s",
                                   (campaign,)).fetchall())
    lab_env.lab.kill_site(lost)
    c = wait_completed(lab_env, campaign, timeout=300)
    assert (c["delivered"], c["failed"], c["pending"]) == (20_000, 0, 0)
    view = patroni_view(lab_env.topo)
    assert view is not None and view.primary == lab_env.topo.postgres_host_of_site(survivor).name
    with psycopg.connect(dsn, autocommit=True) as conn:
        after = dict(conn.execute("SELECT reference, state FROM attempts WHERE campaign_id = %s",
                                  (campaign,)).fetchall())
    assert before, "nothing was recorded before the kill"
    missing = set(before) - set(after)
    assert not missing, f"{len(missing)} outcomes recorded before the kill are gone (RPO > 0)"
    print(f"{len(before)} outcomes recorded before {lost} died, all still there after the "
          f"failover to {survivor}")
    lab_env.lab.up(timeout=180)


def _sms_received(lab: LabHandle, site: str) -> int:
    host = next(h for h in lab.topo.hosts_running("carriers") if h.site == site)
    _, report = request_json("GET", f"{carriers_control_url(lab.topo, host)}/report",
                             timeout=3.0)
    return int(report["sms"]["received"])


def test_a_site_cut_from_the_others_stops_dispatching_within_its_lease(
        lab_env: LabHandle) -> None:
    topo = lab_env.topo
    isolated = "marseille"
    ttl = topo.node_timings.membership_ttl
    campaign = launch_until_delivered(lab_env, 20_000, 2_000)
    with faulted(IsolateSite(lab_env.lab, isolated)):
        cut_at = time.time()
        samples: list[tuple[float, int]] = []
        while time.time() - cut_at < ttl + 10:
            samples.append((time.time(), _sms_received(lab_env, isolated)))
            time.sleep(0.2)
        last_growth = max((t for (t, n), (_, prev) in zip(samples[1:], samples, strict=False)
                           if n > prev), default=cut_at)
        stopped_after = last_growth - cut_at
        print(f"{isolated} sent its last SMS {stopped_after:.1f} s after the cut "
              f"(membership ttl {ttl:g} s)")
        assert stopped_after <= ttl, f"{isolated} kept dispatching {stopped_after:.1f} s"
        c = wait_completed(lab_env, campaign, timeout=300)
    assert (c["delivered"], c["failed"], c["pending"]) == (20_000, 0, 0)
    assert chaos_rules_left(lab_env.lab) == []
    with psycopg.connect(app_dsn(topo, "paris"), autocommit=True) as conn:
        moves = conn.execute(
            "SELECT extract(epoch FROM at), details FROM events WHERE kind = 'watchdog.move' "
            "AND at >= to_timestamp(%s) ORDER BY id", (cut_at,)).fetchall()
    moved_nodes = {n for _, d in moves for n in d["moved"]}
    if moved_nodes:  # the isolated site held batches: they moved only once it had stopped
        first_move = min(float(t) for t, _ in moves)
        assert moved_nodes <= {"marseille-node1", "marseille-node2"}
        assert first_move > last_growth, "a batch was dispatched by both sites at once"
    cross = cross_site_duplicates(topo)["sms"]
    print(f"moved {moved_nodes or 'nothing'}; references delivered by both sites: {cross}")
    assert cross <= 2 * 8 * 100  # what the two isolated nodes could hold in flight
    lab_env.lab.up(timeout=240)


def test_a_site_whose_sms_carrier_refuses_everything_hands_sms_work_to_the_other(
        lab_env: LabHandle) -> None:
    campaign = launch_until_delivered(lab_env, 20_000, 2_000)
    with faulted(CarrierMisbehaves(lab_env.lab, "paris", "sms", "refuse")):
        fault_at = time.time()
        c = wait_completed(lab_env, campaign, timeout=240)
    assert (c["delivered"], c["failed"], c["pending"]) == (20_000, 0, 0)
    with psycopg.connect(app_dsn(lab_env.topo, "marseille"), autocommit=True) as conn:
        after = dict(conn.execute(
            "SELECT final_site || '/' || final_channel, count(*) FROM recipients "
            "WHERE campaign_id = %s AND final_at > to_timestamp(%s) GROUP BY 1",
            (campaign, fault_at)).fetchall())
    print(f"final outcomes after paris's SMS carrier failed: {after}")
    # What paris finished after the fault is what it had in flight then (SMS sent just before,
    # recorded just after; refused ones falling back to e-mail) plus one batch per node at a
    # half-open retry: 2 nodes x (8 batches + 1) x 100 recipients. Everything else moved to
    # marseille, whose SMS carrier works.
    in_paris = after.get("paris/sms", 0) + after.get("paris/email", 0)
    assert in_paris <= 2 * 9 * 100
    assert set(after) <= {"paris/sms", "paris/email", "marseille/sms"}
    assert after.get("marseille/sms", 0) > 5 * in_paris
