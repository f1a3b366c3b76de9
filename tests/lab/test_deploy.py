"""Deploying as an operator does, on the machine lab: a site's machines cut and booted again
rejoin with no manual step and no playbook run; a rolling upgrade runs during a campaign and
costs no recipient; an alert node leaves and joins again mid-campaign (remove_node.yml,
add_node.yml); every playbook run leaves an event in the ledger.

Runs after test_chaos_matrix.py and before test_lab.py (file order); each test leaves the lab
whole."""

from __future__ import annotations

import time

import psycopg
import pytest

from cluster.campaign_cli import carriers_report, cross_site_duplicates
from cluster.lab import deploy
from cluster.lab.access import app_dsn
from cluster.lab.health import patroni_view
from cluster.lab.lab import Lab
from cluster.status import gather
from cluster.topology import Topology
from tests.lab.campaign_kit import launch_until_delivered, wait_completed
from tests.lab.support import LabHandle

pytestmark = pytest.mark.lab


def _primary_site(lab_env: LabHandle) -> str:
    view = patroni_view(lab_env.topo)
    assert view is not None and view.primary is not None
    return lab_env.topo.hosts[view.primary].site


def _members(topo: Topology) -> dict[str, bool]:
    return {n["name"]: n["member"] for n in gather(topo)["nodes"]}


def test_a_sites_machines_cut_and_booted_again_rejoin_with_no_manual_step(
        lab_env: LabHandle) -> None:
    lab, topo = lab_env.lab, lab_env.topo
    lab.up(timeout=600)
    lost = next(s.name for s in topo.datacenter_sites if s.name != _primary_site(lab_env))
    campaign = launch_until_delivered(lab_env, 10_000, 1_000)
    cut = lab.kill_site(lost)
    assert sorted(cut) == sorted(h.name for h in topo.site_hosts(lost))
    lab.last_run = None
    started = time.monotonic()
    lab.up(timeout=600)  # boots the machines; their own systemd starts the services
    rejoined = time.monotonic() - started
    assert lab.last_run is None, "site.yml ran: the machines did not come back on their own"
    view = patroni_view(topo)
    assert view is not None
    assert view.sync_standby == topo.postgres_host_of_site(lost).name  # the synchronous standby
    nodes = _members(topo)
    assert all(nodes[h.name] for h in topo.site_hosts(lost) if h.runs("alert_nodes"))
    print(f"{lost} cut mid-campaign, booted again and rejoined in {rejoined:.1f} s, "
          "no playbook run")
    c = wait_completed(lab_env, campaign)
    assert (c["delivered"], c["failed"], c["pending"]) == (10_000, 0, 0)


@pytest.mark.upgrades_lab
def test_a_rolling_upgrade_during_a_campaign_costs_no_recipient(lab_env: LabHandle) -> None:
    lab, topo = lab_env.lab, lab_env.topo
    lab.up(timeout=600)
    secrets = lab.layout.load_or_create_secrets()
    new_version = f"{deploy.lab_version()}.upgrade"
    campaign = launch_until_delivered(lab_env, 20_000, 2_000)
    began = time.time()
    run = lab.deploy(secrets, playbook="rolling_upgrade.yml", version=new_version)
    assert run.ok, run.summary()
    changed = {h.host for h in run.recap if h.changed}
    assert {h.name for h in topo.hosts_running("alert_nodes")} <= changed
    for host in topo.hosts_running("alert_nodes"):
        assert _installed(lab, host.name) == new_version, host.name
    c = wait_completed(lab_env, campaign, timeout=300)
    assert (c["recipients"], c["delivered"], c["failed"], c["pending"]) == (20_000, 20_000, 0, 0)
    # Each node was drained before it stopped: what a person receives twice stays within what
    # the drained nodes had in flight (measured: printed), and every recipient has one outcome.
    same_site = sum(r["report"]["sms"]["duplicates"] for r in carriers_report(topo))
    cross = cross_site_duplicates(topo)["sms"]
    bound = len(topo.hosts_running("alert_nodes")) * 8 * 100  # max_batches x batch_size each
    print(f"rolling upgrade to {new_version} in {run.seconds:.0f} s during a 20,000-recipient "
          f"campaign: {same_site} references received twice by one site, {cross} by both "
          f"(bound {bound})")
    assert same_site + cross <= bound
    with psycopg.connect(app_dsn(topo, "paris"), autocommit=True) as conn:
        finals = conn.execute("SELECT count(*), count(*) FILTER (WHERE state <> 'pending') "
                              "FROM recipients WHERE campaign_id = %s", (campaign,)).fetchone()
        deploy_events = conn.execute(
            "SELECT details FROM events WHERE kind = 'operator.deploy' "
            "AND at >= to_timestamp(%s) ORDER BY id", (began,)).fetchall()
    assert finals == (20_000, 20_000)
    assert deploy_events, "the rolling upgrade left no event in the ledger"
    details = deploy_events[-1][0]
    assert details["playbook"] == "rolling_upgrade.yml" and details["outcome"] == "ok"
    assert details["versions"]["tenir"] == new_version
    assert set(details["changed"]) >= {h.name for h in topo.hosts_running("alert_nodes")}
    # No way back here: marked ``upgrades_lab``, this runs after every other test of the etcd
    # lab, just before the one that takes it down (rolling back took another minute of CI).


def _installed(lab: Lab, host: str) -> str:
    return lab.run_on(host, ["/opt/tenir/venv/bin/python", "-c",
                             "import importlib.metadata as m; print(m.version('tenir'))"]).strip()


def _attempts_by(lab_env: LabHandle, campaign: int, node: str, after: float) -> int:
    with psycopg.connect(app_dsn(lab_env.topo, "paris"), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM attempts WHERE campaign_id = %s AND node = %s "
                           "AND sent_at > to_timestamp(%s)", (campaign, node, after)).fetchone()
    assert row is not None
    return int(row[0])


def test_an_alert_node_leaves_and_joins_again_mid_campaign(lab_env: LabHandle) -> None:
    """remove_node.yml drains a node mid-campaign (it leaves the membership and sends nothing
    after it stopped), add_node.yml brings it back (a member again, and it takes batches);
    the campaign costs no recipient and both runs are in the ledger."""
    lab, topo = lab_env.lab, lab_env.topo
    lab.up(timeout=600)
    secrets = lab.layout.load_or_create_secrets()
    host = topo.hosts_running("alert_nodes")[-1].name
    began = time.time()
    campaign = launch_until_delivered(lab_env, 20_000, 2_000)
    try:
        removed = lab.deploy(secrets, playbook="remove_node.yml",
                             extra_vars={"tenir_node_host": host})
        stopped_at = time.time()
        assert removed.ok, removed.summary()
        assert not _members(topo)[host]
        unit = lab.run_on(host, ["systemctl", "show", "-p", "ActiveState,UnitFileState",
                                 "tenir-node"])
        assert "ActiveState=inactive" in unit and "UnitFileState=disabled" in unit, unit
        assert _attempts_by(lab_env, campaign, host, stopped_at) == 0
    finally:
        added = lab.deploy(secrets, playbook="add_node.yml", extra_vars={"tenir_node_host": host})
    joined_at = time.time()
    assert added.ok, added.summary()
    assert _members(topo)[host]
    c = wait_completed(lab_env, campaign)
    assert (c["recipients"], c["delivered"], c["failed"], c["pending"]) == (20_000, 20_000, 0, 0)
    after = launch_until_delivered(lab_env, 5_000, 100)
    wait_completed(lab_env, after)
    taken = _attempts_by(lab_env, after, host, joined_at)
    print(f"{host} removed in {removed.seconds:.0f} s and added in {added.seconds:.0f} s "
          f"mid-campaign; it sent {taken} of the next campaign's 5,000")
    assert taken > 0, f"{host} joined but took no batch"
    with psycopg.connect(app_dsn(topo, "paris"), autocommit=True) as conn:
        playbooks = [r[0] for r in conn.execute(
            "SELECT details->>'playbook' FROM events WHERE kind = 'operator.deploy' "
            "AND at >= to_timestamp(%s) ORDER BY id", (began,))]
    assert playbooks[-2:] == ["remove_node.yml", "add_node.yml"], playbooks
