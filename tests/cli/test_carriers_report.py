"""``tenir carriers report`` against carrier simulators run in-process on loopback: per site and
channel within 80 columns, and exit 1, with no traceback, when a simulator does not answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import cli
from nodes.carriers.sim.app import SimConfig, Simulator
from tests.cli.support import PKI, LoopThread, write_inventory

pytestmark = pytest.mark.integration

ADDRESSES = {"paris": "127.0.0.2", "marseille": "127.0.0.3"}


@pytest.fixture
def sims(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LoopThread, dict[str, Simulator]]]:
    monkeypatch.setenv("TENIR_CA_FILE", str(PKI.pki.ca_cert_path))  # control over HTTPS
    loop = LoopThread()
    started: dict[str, Simulator] = {}
    try:
        for site, address in ADDRESSES.items():
            sim = Simulator(SimConfig(site=site, host=address,
                                      tls=PKI.files(f"{site}-carriers", (address,))))
            loop.call(sim.start())
            started[site] = sim
        yield loop, started
    finally:
        for sim in started.values():
            loop.call(sim.stop())
        loop.close()


def inventory(tmp_path: Path, sims: dict[str, Simulator]) -> str:
    hosts = {f"{site}-carriers": {"ansible_host": ADDRESSES[site],
                                  "carrier_sim_control_port": sim.ports["control"]}
             for site, sim in sims.items()}
    return str(write_inventory(tmp_path, hosts=hosts))


def test_report_of_both_sites(sims: tuple[LoopThread, dict[str, Simulator]], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["-i", inventory(tmp_path, sims[1]), "carriers", "report"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].split() == ["paris", "sms", "received", "0", "unique", "0", "duplicates", "0"]
    assert len(out) == 7 and out[3].startswith("marseille  sms ")
    assert out[6] == ("references delivered by more than one site's carriers: sms 0, email 0, "
                      "voice 0")
    assert max(len(line) for line in out) <= 80


def test_a_simulator_that_does_not_answer_exits_1(
        sims: tuple[LoopThread, dict[str, Simulator]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    loop, started = sims
    path = inventory(tmp_path, started)
    loop.call(started.pop("marseille").stop())
    code = cli.main(["-i", path, "carriers", "report"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert (code, err) == (1, "")
    assert lines[3].startswith("marseille  marseille-carriers")
    assert lines[3].endswith("UNREACHABLE")
    assert lines[4].startswith("    ")  # the error under it
    assert lines[-2].startswith("references delivered by more than one site's carriers: ")
    assert "unreachable: marseille" in lines[-1]
    assert max(len(line) for line in lines) <= 80
    assert max(len(line) for line in lines) <= 80
