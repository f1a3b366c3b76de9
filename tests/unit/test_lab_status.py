"""``Lab.status()`` while a drill powers a site off: a machine seen running, then gone when
its services are looked at, shows them as not running instead of raising (CI on a19c5f4:
``MachineError: machine paris-db is not running`` out of ``status()``). No nspawn runs here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cluster.lab import machines, netns
from cluster.lab.lab import Lab
from cluster.lab.layout import LabState, Layout
from cluster.topology import load_topology

pytestmark = pytest.mark.unit
INVENTORY = Path(__file__).resolve().parents[2] / "inventories" / "lab"


def test_a_machine_that_stops_mid_status_shows_its_services_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    topo = load_topology(INVENTORY)
    layout = Layout(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    layout.save_state(LabState(machines=[machines.MachineRecord(h, 10_000 + i, None, "img")
                                         for i, h in enumerate(topo.hosts)]))
    gone = {h.name for h in topo.hosts.values() if h.site == "paris"}

    def run(rec: machines.MachineRecord, argv: Sequence[str], **_: Any
            ) -> Any:  # every look inside a paris machine finds it stopped
        if rec.host in gone:
            raise machines.MachineError(f"machine {rec.host} is not running")
        raise AssertionError("only paris machines are looked at in this test")

    monkeypatch.setattr(machines.MachineRecord, "running",
                        lambda self: self.host in gone)  # running when status() checks
    monkeypatch.setattr(machines, "run", run)
    monkeypatch.setattr(netns, "list_namespaces", lambda: [])
    hosts = {h.name: h for h in Lab(topo, layout).status()}
    paris = [hosts[name] for name in gone]
    assert any(s.name == "postgres" for h in paris for s in h.services)
    assert all(not s.running and s.pid is None for h in paris for s in h.services)
