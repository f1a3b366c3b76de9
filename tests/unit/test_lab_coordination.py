"""Which coordination backend the commands use against a running lab: the one the lab was
brought up with, recorded in its state, whatever the inventory says."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cluster.lab import procs
from cluster.lab.lab import lab_coordination
from cluster.lab.layout import LabState, Layout
from cluster.lab.machines import MachineRecord
from cluster.topology import Topology

pytestmark = pytest.mark.unit


def _me() -> MachineRecord:
    """A machine record whose process runs (this test's own)."""
    pid = os.getpid()
    return MachineRecord("paris-db", pid, procs.start_time_of(pid), "/image")


def test_a_running_lab_of_this_inventory_names_its_backend(lab_topology: Topology,
                                                           tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.save_state(LabState(lab_topology.source, [_me()], coordination="zookeeper"))
    assert lab_coordination(lab_topology, layout) == "zookeeper"
    assert layout.load_state().coordination == "zookeeper"


def test_no_lab_another_inventory_or_dead_processes_name_none(lab_topology: Topology,
                                                              tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert lab_coordination(lab_topology, layout) is None
    layout.save_state(LabState("/elsewhere/hosts.yml", [_me()], coordination="zookeeper"))
    assert lab_coordination(lab_topology, layout) is None
    dead = MachineRecord("paris-db", 2**22 + 17, 1, "/image")
    layout.save_state(LabState(lab_topology.source, [dead], coordination="zookeeper"))
    assert lab_coordination(lab_topology, layout) is None


def test_data_kept_by_lab_down_still_names_its_backend(lab_topology: Topology,
                                                        tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.save_state(LabState(lab_topology.source, [], keep_data=True, coordination="zookeeper"))
    assert lab_coordination(lab_topology, layout) == "zookeeper"


def test_a_state_without_backend_ran_etcd(lab_topology: Topology, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.state_file.parent.mkdir(parents=True, exist_ok=True)
    layout.state_file.write_text(json.dumps({  # no "coordination" key
        "inventory": lab_topology.source, "keep_data": False, "machines": [_me().to_json()]}))
    assert layout.load_state().coordination == "etcd"
    assert lab_coordination(lab_topology, layout) == "etcd"
    layout.save_state(LabState(lab_topology.source, []))
    assert layout.load_state().coordination == ""  # nothing ran: nothing to say


def test_a_process_lab_state_is_no_running_lab(lab_topology: Topology, tmp_path: Path) -> None:
    """The lab before machines recorded processes: such a state names no running lab."""
    layout = Layout(tmp_path)
    layout.state_file.parent.mkdir(parents=True, exist_ok=True)
    layout.state_file.write_text(json.dumps({
        "inventory": lab_topology.source, "keep_data": False, "coordination": "etcd",
        "records": [{"host": "paris-db", "service": "etcd", "pid": os.getpid()}]}))
    assert layout.load_state().machines == []
    assert lab_coordination(lab_topology, layout) is None


def test_a_relative_inventory_path_names_the_same_lab(lab_topology: Topology, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    layout = Layout(tmp_path / "lab")
    root = Path(lab_topology.source).parents[2]
    monkeypatch.chdir(root)
    relative = str(Path(lab_topology.source).relative_to(root))
    layout.save_state(LabState(str(Path(relative).resolve()), [_me()], coordination="zookeeper"))
    monkeypatch.chdir(tmp_path)  # another directory: the recorded path must still match
    assert lab_coordination(lab_topology, layout) == "zookeeper"
