"""The two-site lab: machines deployed by ansible/site.yml, running the real etcd,
Patroni/PostgreSQL and HAProxy.

The tests run in file order on one lab: the demo's job changes which site is primary, and the
test that takes the lab down and checks nothing is left runs after every other etcd lab test
(marker ``ends_lab``).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from cluster.lab import machines, netns, procs
from cluster.lab.access import owner_dsn
from cluster.lab.health import patroni_view, wait_haproxy_routes_to
from cluster.status import gather
from failover.evidence import bundle
from failover.evidence.bundle import entry_from_json
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


def test_the_demo_job_loses_the_primarys_site_and_the_other_takes_over(
        lab_env: LabHandle) -> None:
    """``make demo``'s job (``tenir demo``) on the running lab, as a newcomer runs it: two
    campaigns, then every process of the primary's site killed mid-writes; the other site is
    promoted with nothing lost, and the lost site comes back as the synchronous standby."""
    topo = lab_env.topo
    view = patroni_view(topo)
    assert view is not None and view.primary is not None
    lost_site = topo.hosts[view.primary].site
    survivor = next(s.name for s in topo.datacenter_sites if s.name != lost_site)
    new_primary_host = topo.postgres_host_of_site(survivor).name
    done = subprocess.run([TENIR, "demo"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    last = [line for line in done.stdout.splitlines() if "demo done: " in line]
    assert last, done.stdout[-4000:]
    print(last[-1])
    assert re.search(rf"killed site {lost_site} .*: {new_primary_host} took over, writes "
                     r"resumed after [\d.]+ s; [1-9]\d* acknowledged rows, 0 lost$", last[-1])
    # The lost site came back: it is the synchronous standby, both HAProxies route to the new
    # primary, and the row written before the loss is still read in both sites.
    wait_haproxy_routes_to(topo, new_primary_host, timeout=30)
    pg = gather(topo)["postgres"]
    assert pg["primary"] == new_primary_host
    assert pg["sync_standby"] == topo.postgres_host_of_site(lost_site).name
    for site in ("paris", "marseille"):
        with psycopg.connect(owner_dsn(topo, site), autocommit=True) as conn:
            assert conn.execute("SELECT v FROM lab_check WHERE k = 'written-in-paris'"
                                ).fetchone() == ("bonjour",)


def test_the_evidence_export_holds_the_demo_and_the_drills(evidence_bundle: Path) -> None:
    """``tenir evidence export`` after the demo and the drills (``test_drills.py`` ran before):
    the bundle verified at export, holds the demo's launches, the watchdog's moves, the drills'
    signed records, and the three reports. Its offline verification, on a copy with no lab
    running, is ``test_evidence_offline.py``."""
    whole = (entry_from_json(line) for line in bundle.read(evidence_bundle).entries)
    kinds = Counter(e.kind for e in whole if e is not None)
    print(f"bundle: {sum(kinds.values())} whole entries, {dict(kinds.most_common(8))}")
    assert kinds["campaign.launch"] >= 2  # the demo's campaigns, among others
    assert kinds["watchdog.move"] >= 1  # the demo's site loss, among others
    assert kinds["drill.record"] >= 1
    assert list((evidence_bundle / "records").glob("*.dsse.json"))
    for fmt in ("json", "html", "pdf"):
        assert (evidence_bundle / f"report.{fmt}").stat().st_size > 0, fmt


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
    # and the CLI says so, with its own exit code (issue 15), instead of listing every service
    # DOWN and exiting 0
    status = subprocess.run([TENIR, "lab", "status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 3, status
    assert "the lab is down" in status.stdout + status.stderr
