"""The two-site lab: machines deployed by ansible/site.yml, running the real etcd,
Patroni/PostgreSQL and HAProxy.

The tests run in file order on one lab: the site-loss test changes which site is primary, and the
last test takes the lab down and checks nothing is left.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg
import pytest

from cluster.lab import machines, netns, procs
from cluster.lab.access import owner_dsn
from cluster.lab.health import haproxy_routes, patroni_view, wait_haproxy_routes_to
from cluster.status import gather
from failover.pg_takeover import measure_site_loss
from tests.lab.support import REPO, LabHandle

pytestmark = pytest.mark.lab
TENIR = str(REPO / ".venv" / "bin" / "tenir")


def _cli_json(*args: str) -> dict[str, object]:
    out = subprocess.run([TENIR, *args, "--json"], capture_output=True, text=True, timeout=60,
                         check=True)
    return dict(json.loads(out.stdout))


def test_up_cleared_what_an_interrupted_lab_left(lab_env: LabHandle) -> None:
    left = lab_env.leftovers
    assert left is not None
    assert not procs.is_running(left.stray_pid, left.stray_start)
    assert not left.junk_file.exists()
    assert left.link not in netns.list_links()


def test_three_healthy_etcd_members_on_three_sites_with_quorum(lab_env: LabHandle) -> None:
    status = gather(lab_env.topo)
    assert status["coordination"]["backend"] == "etcd"
    members = status["coordination"]["members"]
    assert len(members) == 3
    assert all(m["healthy"] for m in members)
    assert {m["site"] for m in members} == {"paris", "marseille", "witness"}
    assert sum(1 for m in members if m["leader"]) == 1
    assert status["coordination"]["quorum"] is True


def test_one_primary_and_one_sync_standby_in_different_sites(lab_env: LabHandle) -> None:
    pg = gather(lab_env.topo)["postgres"]
    primary, standby = pg["primary"], pg["sync_standby"]
    assert primary and standby and primary != standby
    assert lab_env.topo.hosts[primary].site != lab_env.topo.hosts[standby].site
    assert isinstance(pg["lag_bytes"], int)


def test_status_json_keys(lab_env: LabHandle) -> None:
    status = _cli_json("status")
    coord = status["coordination"]
    assert isinstance(coord, dict)
    assert coord["backend"] == "etcd"
    assert {"name", "site", "healthy", "leader"} <= set(coord["members"][0])
    assert "quorum" in coord
    assert {"primary", "sync_standby", "lag_bytes"} <= set(status["postgres"])  # type: ignore[arg-type]
    haproxy = status["haproxy"]
    assert isinstance(haproxy, list) and haproxy
    assert {"site", "server", "state"} <= set(haproxy[0])
    assert {(h["site"], h["state"]) for h in haproxy} >= {("paris", "UP"), ("marseille", "UP")}


def test_lab_status_json_lets_a_tool_find_every_process(lab_env: LabHandle) -> None:
    hosts = _cli_json("lab", "status")["hosts"]
    assert isinstance(hosts, list)
    by_name = {h["name"]: h for h in hosts}
    assert set(by_name) == set(lab_env.topo.hosts)
    for h in hosts:
        assert {"name", "site", "namespace", "address", "machine_running", "services"} <= set(h)
        assert h["machine_running"] is True
        for s in h["services"]:
            assert s["running"] is True and isinstance(s["pid"], int)
            # the PID really is inside the host's namespace
            assert s["pid"] in netns.namespace_pids(h["namespace"])
    assert {s["name"] for s in by_name["paris-db"]["services"]} == {
        "etcd", "patroni", "postgres", "haproxy"}


def test_no_route_out_of_any_namespace(lab_env: LabHandle) -> None:
    for host in lab_env.topo.hosts.values():
        routes = subprocess.run(["ip", "-n", netns.namespace_name(host.name), "-4", "route"],
                                capture_output=True, text=True, check=True).stdout
        assert "default" not in routes
        assert routes.strip() == f"{lab_env.topo.lab_network} dev eth0 proto kernel scope link " \
                                 f"src {host.address}"


def test_row_written_through_paris_is_read_through_marseille(lab_env: LabHandle) -> None:
    topo = lab_env.topo
    with psycopg.connect(owner_dsn(topo, "paris"), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS lab_check (k text PRIMARY KEY, v text)")
        conn.execute("INSERT INTO lab_check VALUES ('written-in-paris', 'bonjour') "
                     "ON CONFLICT (k) DO UPDATE SET v = excluded.v")
    with psycopg.connect(owner_dsn(topo, "marseille"), autocommit=True) as conn:
        row = conn.execute("SELECT v FROM lab_check WHERE k = 'written-in-paris'").fetchone()
    assert row == ("bonjour",)


def _pids(lab_env: LabHandle) -> set[tuple[str, str, int | None]]:
    return {(h.name, s.name, s.pid) for h in lab_env.lab.status() for s in h.services}


def test_site_yml_again_changes_nothing(lab_env: LabHandle) -> None:
    """A second run of the playbook reports changed=0 on every host and restarts nothing."""
    before = _pids(lab_env)
    lab_env.lab.up(timeout=600, deploy_mode="always")
    run = lab_env.lab.last_run
    assert run is not None and run.playbook == "site.yml"
    assert {h.host for h in run.recap} == set(lab_env.topo.hosts)
    assert [(h.host, h.changed) for h in run.recap if h.changed] == []
    assert all(h.failed == 0 and h.unreachable == 0 for h in run.recap)
    assert _pids(lab_env) == before


def test_no_lab_service_runs_as_root(lab_env: LabHandle) -> None:
    """ps inside every machine: tenir, etcd, ZooKeeper, HAProxy and PostgreSQL run as their own
    users (only the machine's own systemd, journald, logind, sshd and getty run as root)."""
    services = ("python", "etcd", "java", "haproxy", "postgres", "patroni")
    for host in lab_env.topo.hosts.values():
        procs_ = machines.processes(lab_env.lab.machine(host.name))
        ours = [p for p in procs_ if p["command"] in services]
        assert ours, f"{host.name} runs none of tenir's services"
        assert [p for p in ours if p["user"] == "root"] == [], host.name


def test_losing_the_primary_site_promotes_the_other_and_loses_nothing(lab_env: LabHandle) -> None:
    topo, lab = lab_env.topo, lab_env.lab
    view = patroni_view(topo)
    assert view is not None and view.primary is not None
    old_primary = view.primary
    lost_site = topo.hosts[old_primary].site
    survivor = next(s.name for s in topo.datacenter_sites if s.name != lost_site)
    new_primary_host = topo.postgres_host_of_site(survivor).name

    def current_primary() -> str | None:
        v = patroni_view(topo)
        return v.primary if v else None

    result = measure_site_loss(
        survivor_dsn=owner_dsn(topo, survivor), kill_site=lambda: lab.kill_site(lost_site),
        killed_site=lost_site, old_primary=old_primary, current_primary=current_primary,
        timeout=120,
    )
    print(result.sentence())
    assert result.seconds_to_write is not None, "writes never resumed on the surviving site"
    assert result.new_primary == new_primary_host
    assert result.acknowledged > 0 and result.lost == 0
    survivor_haproxy = [h for h in topo.hosts_running("haproxy") if h.site == survivor]
    assert [haproxy_routes(topo, h) for h in survivor_haproxy] == [[new_primary_host]]
    for host in topo.site_hosts(lost_site):
        assert netns.namespace_pids(netns.namespace_name(host.name)) == []

    # Bring the lost site back: it rejoins as the synchronous standby, and both HAProxies
    # route to the new primary; the row written before the loss is still read in both sites.
    lab.up(timeout=600)
    wait_haproxy_routes_to(topo, new_primary_host, timeout=30)
    pg = gather(topo)["postgres"]
    assert pg["primary"] == new_primary_host
    assert pg["sync_standby"] == topo.postgres_host_of_site(lost_site).name
    for site in ("paris", "marseille"):
        with psycopg.connect(owner_dsn(topo, site), autocommit=True) as conn:
            assert conn.execute("SELECT v FROM lab_check WHERE k = 'written-in-paris'"
                                ).fetchone() == ("bonjour",)


def test_down_keep_data_then_up_keeps_rows(lab_env: LabHandle) -> None:
    lab_env.lab.down(keep_data=True)
    assert netns.list_namespaces() == []
    lab_env.lab.up(timeout=180)
    with psycopg.connect(owner_dsn(lab_env.topo, "marseille"), autocommit=True) as conn:
        assert conn.execute("SELECT v FROM lab_check WHERE k = 'written-in-paris'"
                            ).fetchone() == ("bonjour",)


@pytest.mark.ends_lab
def test_down_leaves_no_machine_mount_namespace_link_process_or_data(
        lab_env: LabHandle) -> None:
    records = lab_env.layout.load_state().machines
    postmasters = [lab_env.lab.postmaster_pid(h.name)
                   for h in lab_env.topo.hosts_running("postgres")]
    assert records and all(postmasters)
    lab_env.lab.down()
    assert netns.list_namespaces() == []
    assert netns.list_links() == []
    for r in records:
        assert not r.running(), f"machine {r.host} still runs"
    for pid in postmasters:
        assert pid is not None and not procs.is_running(pid)
    root = str(Path(lab_env.layout.root).resolve())
    with open("/proc/self/mounts") as mounts:
        assert [line for line in mounts if root in line.split()[1]] == []
    assert not Path(lab_env.layout.root).exists()
    assert subprocess.run(["pgrep", "-f", "systemd-nspawn.*tenir"], capture_output=True
                          ).stdout == b""
