"""The node-kill and site-kill cases on the lab, mid-campaign, with assertions of their own
(the watchdog's reservation for the dead node's site, the surviving site's next delivery
within 5 s). The etcd lab runs the node kill (``test_failover.py``; its site case is the
lose-standby-site drill there), the ZooKeeper lab the site case (``test_zookeeper_lab.py``);
on both backends the chaos matrix's node-kill and primary-site
power cut are judged by the checkers (recipients, RPO over every acknowledged outcome,
duplicates, fencing, watchdog). Each case leaves the lab healed (``lab.up``)."""

from __future__ import annotations

import time

import psycopg

from cluster.campaign_cli import carriers_report, cross_site_duplicates, references_by_site
from cluster.lab.access import app_dsn
from cluster.lab.health import patroni_view
from tests.lab.campaign_kit import launch_until_delivered, wait_completed
from tests.lab.support import LabHandle


def node_killed_mid_campaign(lab_env: LabHandle) -> None:
    """kill -9 of paris-node1 mid-campaign (its unit's restart policy brings it back once its
    old membership has expired): its batches are finished by the others, every recipient
    delivered, and what a person receives twice stays within what the node had in flight;
    the lab is healed after."""
    campaign = launch_until_delivered(lab_env, 10_000, 1_500)
    killed_at = time.time()
    lab_env.lab.kill_service("paris-node1", "node")
    c = wait_completed(lab_env, campaign, timeout=180)
    assert (c["recipients"], c["delivered"], c["failed"], c["pending"]) == (10_000, 10_000, 0, 0)
    # Every submission counts (the simulators no longer hide a resent reference): those of the
    # same site (the watchdog holds the dead node's batches 3 s for paris) and those that reached
    # both sites' carriers are, together, bounded by what the dead node had in flight.
    same_site = sum(r["report"]["sms"]["duplicates"] for r in carriers_report(lab_env.topo))
    refs = references_by_site(lab_env.topo, "sms")
    recipients = {int(ref.split(":")[1]) for site in refs.values() for ref in site
                  if ref.startswith(f"{campaign}:")}
    assert len(recipients) == 10_000
    cross = cross_site_duplicates(lab_env.topo)["sms"]
    in_flight_bound = 8 * 100  # the dead node's max_batches x batch_size
    print(f"references received twice after the kill: {same_site} by one site's carrier, "
          f"{cross} by both sites' (bound {in_flight_bound})")
    assert same_site + cross <= in_flight_bound
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
    # paris-node2 still lives: the batches were held for paris first.
    assert details["reserved"]["paris-node1"]["site"] == "paris"
    print(f"watchdog moved paris-node1's batches {float(first_move_at) - killed_at:.1f} s after "
          f"the kill: {sentence}")
    assert {"paris-node2", "marseille-node1", "marseille-node2"} <= set(by_node)
    lab_env.lab.up(timeout=300)  # the lab is whole again for the tests that follow


def primary_site(lab: LabHandle) -> str:
    view = patroni_view(lab.topo)
    assert view is not None and view.primary is not None
    return lab.topo.hosts[view.primary].site


def site_without_primary_lost_mid_campaign(lab_env: LabHandle) -> None:
    """Every process of the site without the primary killed: the other site's next delivery
    is recorded within 5 s, the campaign completes."""
    lost = next(s.name for s in lab_env.topo.datacenter_sites
                if s.name != primary_site(lab_env))
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
    lab_env.lab.up(timeout=600)
