"""The nemesis's faults and heals, on a fake lab and a fake firewall that log what they were
asked to do, in order."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from chaos.faults import CarrierMisbehaves, CutLink, IsolateSite, KillService, chaos_rules_left
from chaos.labops import LabOps
from chaos.matrix import PlanError, Roles, Tools, plan
from chaos.power import SitePowerCut
from chaos.process_faults import FreezeNode, KillCoordination, KillPostmaster, StopPatroni
from chaos.scenario import FaultStep, load_all
from cluster.member_probe import MemberHealth
from cluster.topology import Topology, load_topology
from tests.fakes.lab import FakeFirewall, FakeLab

pytestmark = pytest.mark.unit


@pytest.fixture
def topo(lab_inventory_path: Path) -> Topology:
    return load_topology(lab_inventory_path)


def _lab(topo: Topology) -> tuple[FakeLab, FakeFirewall]:
    lab = FakeLab(topo)
    return lab, FakeFirewall(log=lab.log)  # one log: the order across both is checked


def test_a_power_cut_is_silence_first_then_every_machine_killed(topo: Topology) -> None:
    lab, fw = _lab(topo)
    slept: list[float] = []
    cut = SitePowerCut(lab, "paris", 10.0, fw, sleep=lambda s: (slept.append(s),
                                                                 lab.log.append("sleep"))[0])
    cut.inject()
    paris = [h.name for h in topo.site_hosts("paris")]
    silences = [line for line in lab.log if line.startswith("silence")]
    assert [s.split()[1] for s in silences] == [f"tenir-{h}" for h in paris]
    # both the lab's network and the controller's bridge address are cut, own traffic kept
    assert silences[0] == "silence tenir-paris-db keep 10.213.0.11 drop 10.213.0.0/24,10.213.0.1"
    assert lab.log[len(paris):] == ["sleep", "kill_site paris"]
    assert slept == [10.0] and cut.killed == paris
    cut.heal()
    assert lab.log[-len(paris) - 1:] == [f"clear tenir-{h}" for h in paris] + ["up never"]
    assert not fw.rules


def test_a_power_cut_without_silence_kills_at_once(topo: Topology) -> None:
    lab, fw = _lab(topo)
    SitePowerCut(lab, "marseille", 0.0, fw, sleep=lambda s: pytest.fail("slept")).inject()
    assert lab.log == ["kill_site marseille"]
    with pytest.raises(ValueError, match="silence_s"):
        SitePowerCut(lab, "paris", -1.0, fw)


def test_a_cut_link_drops_only_the_other_sites_addresses(topo: Topology) -> None:
    lab, fw = _lab(topo)
    cut = CutLink(lab, "paris", "marseille", fw)
    cut.inject()
    marseille = ",".join(str(h.address) for h in topo.site_hosts("marseille"))
    assert lab.log == [f"drop tenir-{h.name} {marseille}" for h in topo.site_hosts("paris")]
    assert "10.213.0.31" not in marseille  # the witness stays reachable
    assert chaos_rules_left(lab, fw) == [f"tenir-{h.name}" for h in topo.site_hosts("paris")]
    cut.heal()
    assert chaos_rules_left(lab, fw) == []


def test_isolation_cuts_every_other_site_the_witness_included(topo: Topology) -> None:
    lab, fw = _lab(topo)
    IsolateSite(lab, "marseille", fw).inject()
    assert all("10.213.0.31" in line and "10.213.0.11" in line for line in lab.log)


def test_a_frozen_node_is_woken_then_the_lab_waited_for(topo: Topology) -> None:
    lab = FakeLab(topo)
    freeze = FreezeNode(lab, "paris-node1")
    freeze.inject()
    assert lab.frozen == {("paris-node1", "node")}
    freeze.heal()
    assert lab.log == ["signal paris-node1 node SIGSTOP", "signal paris-node1 node SIGCONT",
                       "up never"]


def test_a_kill_of_a_service_that_is_not_running_is_refused(topo: Topology) -> None:
    lab = FakeLab(topo, stopped={("paris-db", "haproxy")})
    with pytest.raises(RuntimeError, match="haproxy on paris-db was not running"):
        KillService(lab, "paris-db", "haproxy").inject()
    KillService(lab, "marseille-db", "haproxy").inject()
    assert lab.log == ["signal marseille-db haproxy SIGKILL"]


def test_the_postmaster_is_found_on_the_machine_and_killed_as_postgres(topo: Topology) -> None:
    lab = FakeLab(topo, run_answers={"sh": "4242\n"})
    kill = KillPostmaster(lab, "paris-db")
    kill.inject()
    assert kill.killed_pid == 4242 and "pid 4242" in kill.describe()
    # the script reads PGDATA/postmaster.pid (the role's data directory) and kills as postgres
    assert lab.log == ["run_on paris-db sh -c ... /var/lib/postgresql/15/tenir"]
    from chaos.process_faults import POSTMASTER_KILL
    assert "postmaster.pid" in POSTMASTER_KILL and "runuser -u postgres -- kill -9" in \
        POSTMASTER_KILL
    lab.run_answers["sh"] = ""
    with pytest.raises(RuntimeError, match="postmaster kill said"):
        KillPostmaster(lab, "paris-db").inject()


def _probe(leader: str | None) -> object:
    def probe(_topo: Topology) -> list[MemberHealth]:
        return [MemberHealth(n, "x", True, n == leader, "1")
                for n in ("paris-db", "marseille-db", "witness-quorum")]
    return probe


def test_the_coordination_leader_and_a_follower_are_found_by_probing(topo: Topology) -> None:
    lab = FakeLab(topo)
    leader = KillCoordination(lab, "leader", probe=_probe("marseille-db"))  # type: ignore[arg-type]
    leader.inject()
    assert leader.victim == "marseille-db" and lab.log == ["signal marseille-db etcd SIGKILL"]
    follower = KillCoordination(lab, "follower", random.Random(1),
                                probe=_probe("marseille-db"))  # type: ignore[arg-type]
    follower.inject()
    assert follower.victim in ("paris-db", "witness-quorum")
    witness = KillCoordination(lab, "witness", probe=_probe("paris-db"))  # type: ignore[arg-type]
    witness.inject()
    assert witness.victim == "witness-quorum"
    with pytest.raises(RuntimeError, match="no single etcd leader"):
        KillCoordination(lab, "leader", probe=_probe(None)).inject()  # type: ignore[arg-type]


def test_stopping_the_primarys_patroni_is_healed_by_starting_it(topo: Topology) -> None:
    lab = FakeLab(topo)
    stop = StopPatroni(lab, "paris-db")
    stop.inject()
    stop.heal()
    assert lab.log == ["stop paris-db patroni", "start paris-db patroni", "up never"]


@pytest.mark.parametrize(("mode", "extra", "body"), [
    ("refuse", {"refuse_temporary": True}, {"mode": "refuse", "refuse_temporary": True}),
    ("timeout", {}, {"mode": "timeout"}),
    ("throttle", {"throttle_per_s": 50.0}, {"mode": "throttle", "throttle_per_s": 50.0}),
    ("slow", {"delay_ms": 2000}, {"mode": "slow", "delay_ms": 2000}),
    ("drop_receipts", {}, {"drop_receipts": True}),
])
def test_a_carrier_fault_posts_its_mode_and_the_heal_resets_receipts_too(
        topo: Topology, mode: str, extra: dict[str, object], body: dict[str, object]) -> None:
    posted: list[tuple[str, dict[str, object]]] = []
    fault = CarrierMisbehaves(FakeLab(topo), "paris", "sms", mode,
                              post=lambda site, b: posted.append((site, b)),
                              **extra)  # type: ignore[arg-type]
    fault.inject()
    fault.heal()
    assert posted == [("paris", {"channel": "sms", **body}),
                      ("paris", {"channel": "sms", "mode": "normal", "drop_receipts": False})]
    with pytest.raises(ValueError, match="mode"):
        CarrierMisbehaves(FakeLab(topo), "paris", "sms", "normal")


ROLES = Roles(primary="paris", standby="marseille")


def _plan(topo: Topology, step: FaultStep,
          fault_s: float = 20.0) -> tuple[object, dict[str, object], float]:
    lab: LabOps = FakeLab(topo)
    p = plan(step, lab, ROLES, random.Random(0), fault_s,
             Tools(firewall=FakeFirewall(), probe=_probe("paris-db")))  # type: ignore[arg-type]
    return p.fault, p.value, p.hold_s


def test_every_fault_of_every_scenario_has_a_nemesis(topo: Topology) -> None:
    for scenario in load_all():
        for step in scenario.faults:
            fault, _value, hold = _plan(topo, step, scenario.fault_s)
            assert fault.describe(), f"{scenario.name}: {step.name}"  # type: ignore[attr-defined]
            assert hold >= 0


def test_roles_and_what_the_history_says_fails(topo: Topology) -> None:
    fault, value, _ = _plan(topo, FaultStep("cut_link", {"site_a": "paris",
                                                         "site_b": "marseille"}))
    assert value == {"sites": ["paris", "marseille"], "site": "marseille"}  # lost PostgreSQL
    assert isinstance(fault, CutLink)
    _, value, hold = _plan(topo, FaultStep("site_power_cut", {"site": "primary", "silence_s": 10,
                                                              "power_back_after_s": 30}), 40)
    assert value == {"site": "paris"} and hold == 30
    _, _, hold = _plan(topo, FaultStep("site_power_cut", {"site": "standby", "silence_s": 10}), 40)
    assert hold == 30  # fault_s less the silence
    _, value, hold = _plan(topo, FaultStep("freeze_node", {"node": "paris-node1",
                                                           "freeze_s": 50}))
    assert value == {"nodes": ["paris-node1"]} and hold == 50
    fault, value, _ = _plan(topo, FaultStep("kill_postmaster", {"target": "standby"}))
    assert isinstance(fault, KillPostmaster) and fault.host == "marseille-db"
    _, value, _ = _plan(topo, FaultStep("kill_haproxy", {"site": "standby"}))
    assert value == {"site": "marseille"}
    _, value, _ = _plan(topo, FaultStep("witness_loss", {}))
    assert value == {"site": "witness"}


def test_a_step_naming_what_the_lab_lacks_is_refused(topo: Topology) -> None:
    with pytest.raises(PlanError, match="node 'lyon-node1': not an alert node"):
        _plan(topo, FaultStep("kill_node", {"node": "lyon-node1"}))
    with pytest.raises(PlanError, match="site 'lyon': not a site"):
        _plan(topo, FaultStep("isolate_site", {"site": "lyon"}))
    with pytest.raises(PlanError, match="both 'paris'"):
        _plan(topo, FaultStep("cut_link", {"site_a": "primary", "site_b": "paris"}))
    with pytest.raises(PlanError, match="no nemesis"):
        _plan(topo, FaultStep("meteor", {}))
