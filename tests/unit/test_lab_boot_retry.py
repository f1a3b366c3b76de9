"""A machine whose nspawn exits while booting (after a power cut) is booted again, 0.5 s then
twice as long apart, five attempts in all; past them the error names the console's last lines.
A PostgreSQL member's boot may last as long as its Patroni unit's start (660 s), others 120 s.
The machines module is replaced: no nspawn runs here."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.lab import lab as lab_mod
from cluster.lab import machines
from cluster.lab.lab import BOOT_ATTEMPTS, Lab, LabError
from cluster.lab.layout import LabState, Layout
from cluster.topology import load_topology

pytestmark = pytest.mark.unit
INVENTORY = Path(__file__).resolve().parents[2] / "inventories" / "lab"


class Flaky:
    """Boots that exit at once ``failures`` times, then one that comes up."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.boots = 0
        self.sleeps: list[float] = []
        self.timeouts: list[float] = []

    def boot(self, paths: object, host: str, namespace: str, image: Path
             ) -> machines.MachineRecord:
        self.boots += 1
        return machines.MachineRecord(host, 10_000 + self.boots, None, str(image))

    def wait_booted(self, rec: machines.MachineRecord, timeout: float, **_: object) -> None:
        self.timeouts.append(timeout)
        if rec.pid - 10_000 <= self.failures:
            raise machines.MachineError(f"{rec.host}: nspawn exited while booting")


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Flaky:
    f = Flaky(request.param)
    monkeypatch.setattr(machines, "boot", f.boot)
    monkeypatch.setattr(machines, "wait_booted", f.wait_booted)
    monkeypatch.setattr(machines, "clear_stale", lambda host: None)
    monkeypatch.setattr(machines, "console_tail", lambda paths, n: "Failed to mount /run")
    monkeypatch.setattr(machines.MachineRecord, "running", lambda self: False)
    monkeypatch.setattr(lab_mod.time, "sleep", f.sleeps.append)
    return f


def _lab(tmp_path: Path) -> tuple[Lab, LabState]:
    lab = Lab(load_topology(INVENTORY), Layout(tmp_path))
    tmp_path.mkdir(parents=True, exist_ok=True)
    return lab, LabState()


@pytest.mark.parametrize("flaky", [3], indirect=True)
def test_a_boot_that_fails_three_times_comes_up_on_the_fourth(flaky: Flaky,
                                                              tmp_path: Path) -> None:
    lab, state = _lab(tmp_path)
    first = machines.MachineRecord("paris-node1", 10_001, None, "/img")
    flaky.boots = 1
    lab._wait_booted(state, first)
    assert flaky.boots == 4 and flaky.sleeps == [0.5, 1.0, 2.0]
    assert [m.pid for m in state.machines] == [10_004]  # the record kept is the live one


@pytest.mark.parametrize("flaky", [99], indirect=True)
def test_past_the_attempts_the_error_names_the_console(flaky: Flaky, tmp_path: Path) -> None:
    lab, state = _lab(tmp_path)
    flaky.boots = 1
    with pytest.raises(LabError, match=r"paris-node1 does not boot after 5 attempts: .*"
                                       r"last lines: Failed to mount /run"):
        lab._wait_booted(state, machines.MachineRecord("paris-node1", 10_001, None, "/img"))
    assert flaky.boots == BOOT_ATTEMPTS and sum(flaky.sleeps) == 7.5


@pytest.mark.parametrize("flaky", [0], indirect=True)
def test_a_postgresql_member_may_take_as_long_to_boot_as_its_patroni_unit_to_start(
        flaky: Flaky, tmp_path: Path) -> None:
    """After a power cut an old primary that cannot be rewound is copied again from the new
    primary before its Patroni unit counts as started (the chaos matrix: more than 120 s)."""
    lab, state = _lab(tmp_path)
    lab._wait_booted(state, machines.MachineRecord("paris-db", 10_001, None, "/img"))
    lab._wait_booted(state, machines.MachineRecord("paris-node1", 10_002, None, "/img"))
    assert flaky.timeouts == [lab_mod.BOOT_WAIT_POSTGRES_S, lab_mod.BOOT_WAIT_S] == [660, 120]
    unit = (INVENTORY.parents[1] / "ansible" / "roles" / "patroni" / "templates"
            / "patroni.service.j2").read_text()
    assert f"TimeoutStartSec={lab_mod.BOOT_WAIT_POSTGRES_S:.0f}" in unit


def test_a_machine_gone_while_its_units_are_asked_for_lists_none() -> None:
    """The slow boot's message must never end the wait itself."""
    gone = machines.MachineRecord("paris-db", 2**22 + 12_345, None, "/img")  # no such process
    assert machines.starting_units(gone) == []
