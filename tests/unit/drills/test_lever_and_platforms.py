"""The lever's keys (one drill at a time, a stale lock taken over, an abort that names a run or
none), what the production platform runs on which host (and that a heal tries every host), and
the plan: every step with exactly what it touches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster.topology import load_topology
from failover.drills.catalog import find
from failover.drills.lever import ABORT_KEY, DrillBusy, Lever
from failover.drills.plan import plan_lines
from failover.drills.session import Roles
from failover.drills.settings import drill_settings
from failover.drills.ssh_platform import CHAIN, SshPlatform, units_of
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
PRODUCTION = REPO / "inventories" / "production-example"


def test_the_lock_refuses_a_second_drill_and_takes_over_a_stale_one() -> None:
    server = FakeCoordinationServer()
    now = [1000.0]
    first = Lever(FakeCoordinator(server, "a"), clock=lambda: now[0])
    second = Lever(FakeCoordinator(server, "b"), clock=lambda: now[0])

    async def go() -> None:
        assert await first.acquire("lose-witness-1", "lose-witness", "x", "pc1") is None
        with pytest.raises(DrillBusy, match=r"drill lose-witness-1 \(lose-witness\) is running"):
            await second.acquire("lose-primary-site-2", "lose-primary-site", "y", "pc2")
        now[0] += 30
        await first.heartbeat("lose-witness-1")
        now[0] += 45  # 45 s since the last heartbeat: still held
        with pytest.raises(DrillBusy):
            await second.acquire("lose-primary-site-2", "lose-primary-site", "y", "pc2")
        now[0] += 30  # 75 s: the runner died
        note = await second.acquire("lose-primary-site-2", "lose-primary-site", "y", "pc2")
        assert note is not None and "took over the lock of drill lose-witness-1" in note
        await first.release("lose-witness-1")  # not its lock any more: nothing happens
        assert (await second.active() or {})["run"] == "lose-primary-site-2"

    asyncio.run(go())


def test_an_abort_stops_the_run_it_names_or_any() -> None:
    server = FakeCoordinationServer()
    lever = Lever(FakeCoordinator(server, "a"))

    async def go() -> None:
        await lever.request_abort("oncall:1", "wrong site", run="other-run")
        assert await lever.aborts("my-run") is None
        await lever.request_abort("oncall:1", "stop everything")
        request = await lever.aborts("my-run")
        assert request is not None and request.sentence() == ("aborted by oncall:1: stop "
                                                              "everything")
        await lever.acquire("my-run", "k", "r", "h")  # an abort left from before is cleared
        assert ABORT_KEY not in server.keys

    asyncio.run(go())


class Recorder:
    def __init__(self, fail_on: str | None = None) -> None:
        self.ran: list[tuple[str, str]] = []
        self.fail_on = fail_on

    def run(self, host: str, command: str) -> None:
        self.ran.append((host, command))
        if host == self.fail_on:
            raise RuntimeError(f"{host}: unreachable")


def platform(recorder: Recorder) -> SshPlatform:
    topo = load_topology(PRODUCTION)
    never: Callable[[], str | None] = lambda: None  # noqa: E731
    return SshPlatform(topo, recorder, lambda: None, never)  # type: ignore[arg-type,return-value]


def test_a_production_power_cut_masks_and_kills_each_hosts_units() -> None:
    rec = Recorder()
    fault = platform(rec).power_cut("paris")
    fault.inject()
    assert rec.ran == [
        ("paris-pg1", "systemctl mask --runtime patroni && systemctl kill --signal=SIGKILL "
                      "patroni"),
        ("paris-lb1", "systemctl mask --runtime etcd haproxy && systemctl kill "
                      "--signal=SIGKILL etcd haproxy"),
        ("paris-alert1", "systemctl mask --runtime tenir-node && systemctl kill "
                         "--signal=SIGKILL tenir-node"),
        ("paris-alert2", "systemctl mask --runtime tenir-node && systemctl kill "
                         "--signal=SIGKILL tenir-node")]
    # real carriers: the gateway runs nothing of tenir's, and is not touched
    assert units_of(load_topology(PRODUCTION), load_topology(PRODUCTION).hosts["paris-gw1"]) == []


def test_a_heal_tries_every_host_and_names_those_that_failed() -> None:
    rec = Recorder(fail_on="paris-lb1")
    fault = platform(rec).power_cut("paris")
    with pytest.raises(RuntimeError, match="paris-lb1: unreachable"):
        fault.heal()
    assert [h for h, _ in rec.ran] == ["paris-pg1", "paris-lb1", "paris-alert1", "paris-alert2"]
    assert all(c.startswith("systemctl unmask --runtime") for _, c in rec.ran)


def test_a_production_link_cut_and_carrier_outage_use_the_drills_own_chain() -> None:
    rec = Recorder()
    p = platform(rec)
    p.cut_link("paris", "marseille").inject()
    assert [h for h, _ in rec.ran] == ["paris-pg1", "paris-lb1", "paris-alert1", "paris-alert2"]
    assert all(f"-A {CHAIN} -s 192.0.2.111 -j DROP" in c for _, c in rec.ran)
    rec.ran.clear()
    p.carrier_outage("marseille").inject()
    assert rec.ran and [h for h, _ in rec.ran] == ["marseille-alert1", "marseille-alert2"]
    assert all(f"-A {CHAIN} -d 192.0.2.131 -j REJECT" in c for _, c in rec.ran)


def test_the_plan_says_every_step_and_exactly_what_it_touches() -> None:
    topo = load_topology(PRODUCTION)
    drill, settings = drill_settings(topo, find("lose-primary-site"))
    lines = plan_lines(drill, roles=Roles("paris", "marseille", "lille"),
                       platform=platform(Recorder()), settings=settings)
    text = "\n".join(lines)
    assert "sites: primary paris, standby marseille, witness lille" in text
    assert "test campaign: the test group drill-test-phones, scenario drill-test" in text
    assert ("touches paris-lb1: systemctl mask --runtime etcd haproxy && systemctl kill "
            "--signal=SIGKILL etcd haproxy; heal: systemctl unmask --runtime etcd haproxy && "
            "systemctl start etcd haproxy") in text
    assert "time to the first message after the fault: 30 s" in text
    assert "a real campaign of priority 9 or more urgent is launched" in text
    for n in range(1, 8):
        assert f"  {n}. [" in text
    assert ("[verify] wait until the cluster is whole again: wait until the cluster is whole "
            "again (every member, HAProxy and carrier), paris back as the synchronous "
            "standby") in text


def test_the_lab_plan_names_each_machine_a_power_cut_kills() -> None:
    from cluster.lab.lab import Lab
    from failover.drills.lab_platform import LabPlatform

    topo = load_topology(REPO / "inventories" / "lab")
    lab = LabPlatform(Lab(topo), lambda: None, lambda: None)  # type: ignore[arg-type,return-value]
    lines = lab.touches("power_cut", site="marseille")
    assert lines[0] == ("marseille-db (10.213.0.21): SIGKILL of the machine (systemd-nspawn; "
                        "runs etcd, patroni, haproxy); heal: tenir lab up boots it")
    assert len(lines) == 4
    assert lab.touches("carrier_outage", site="paris") == [
        "paris-carriers: POST https://10.213.0.14:8091/control {channel: all, mode: refuse}; "
        "heal: mode normal"]
    link = lab.touches("cut_link", site_a="paris", site_b="marseille")
    assert link[0].startswith("paris-db: iptables chain TENIR_CHAOS in namespace ")
    assert "drops 10.213.0.21, 10.213.0.22, 10.213.0.23, 10.213.0.24" in link[0]
