"""``make install`` (scripts/install-debian.sh) on this machine, as root: one line per step on a
fresh machine with apt's and pip's output kept in a log, the whole output of a failing step,
a short summary on an installed machine, and no packaged etcd, HAProxy, PostgreSQL or ZooKeeper
service enabled at boot. Fresh venvs are built under a temporary folder (PATRONI_VENV,
TENIR_VENV), so the machine's own venvs are left alone."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "install-debian.sh"
BOOT_SERVICES = ("etcd", "haproxy", "postgresql", "zookeeper")
PIP_OUTPUT = re.compile(r"Collecting|Successfully installed|Requirement already|WARNING|"
                        r"DEPRECATION|Reading package lists|Setting up", re.IGNORECASE)


@dataclass
class Install:
    env: dict[str, str]
    log: Path
    patroni: Path
    venv: Path


def run(install: Install, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT)], env={**install.env, **extra}, capture_output=True,
                          text=True, timeout=600, check=False)


def boot_links() -> list[str]:
    """Links that start one of BOOT_SERVICES at boot: systemd's .wants/ and SysV's S links."""
    out = []
    for svc in BOOT_SERVICES:
        out += glob.glob(f"/etc/systemd/system/*.wants/{svc}*.service")
        out += glob.glob(f"/etc/rc[2345S].d/S[0-9][0-9]{svc}")
    return sorted(out)


@pytest.fixture(scope="module")
def fresh() -> Iterator[tuple[Install, subprocess.CompletedProcess[str]]]:
    if os.geteuid() != 0:
        pytest.fail("the install tests run as root, like make install")
    # a short folder, like /opt/tenir or a checkout's .venv: the summary keeps to one line a row
    tmp = Path(tempfile.mkdtemp(prefix="inst-"))
    install = Install(env={}, log=tmp / "install.log", patroni=tmp / "opt" / "patroni-venv",
                      venv=tmp / "venv")
    install.env = {**os.environ, "PATRONI_VENV": str(install.patroni),
                   "TENIR_VENV": str(install.venv), "TENIR_INSTALL_LOG": str(install.log)}
    try:
        yield install, run(install)
    finally:
        shutil.rmtree(tmp)


def test_a_fresh_install_prints_one_line_per_step_and_keeps_pip_in_the_log(
        fresh: tuple[Install, subprocess.CompletedProcess[str]]) -> None:
    install, result = fresh
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"Patroni venv: building {install.patroni} \.\.\. done \(\d+ s\)",
                        lines[0]), lines
    assert re.fullmatch(rf"project venv: building {install.venv} \.\.\. done \(\d+ s\)",
                        lines[1]), lines
    assert lines[2] == f"installed (what apt and pip printed: {install.log}):"
    assert not [line for line in lines if PIP_OUTPUT.search(line)]
    assert max(len(line) for line in lines) <= 80
    log = install.log.read_text()
    assert "Successfully installed" in log and "patroni" in log
    assert "DEPRECATION" not in log  # Patroni's sdists are built the PEP 517 way
    version = subprocess.run([str(install.venv / "bin" / "tenir"), "--version"],
                             capture_output=True, text=True, check=True)
    assert version.stdout.startswith("tenir ")


def test_an_installed_machine_gets_a_short_summary(
        fresh: tuple[Install, subprocess.CompletedProcess[str]]) -> None:
    install, first = fresh
    assert first.returncode == 0, first.stderr
    result = run(install)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "installed:"
    assert len(lines) <= 12 and max(len(line) for line in lines) <= 80, lines
    text = result.stdout
    for pattern in (r"PostgreSQL 15\.\d+ +/usr/lib/postgresql/15/bin",
                    r"etcd \d+\.\d+\.\d+ +/usr/bin/etcd", r"ZooKeeper \d+\.\d+",
                    r"HAProxy \d+\.\d+\.\d+ +/usr/sbin/haproxy", r"tmux \d",
                    rf"Patroni \d+\.\d+\.\d+ +{install.patroni}",
                    rf"tenir \d+\.\d+\.\d+ \(Python 3\.11\.\d+\) +{install.venv}",
                    r"at boot: etcd haproxy postgresql zookeeper disabled"):
        assert re.search(pattern, text), (pattern, text)
    assert not PIP_OUTPUT.search(text)


def test_a_failing_step_shows_its_whole_output(
        fresh: tuple[Install, subprocess.CompletedProcess[str]]) -> None:
    install, _ = fresh
    folder = install.log.parent / "broken"  # short, as the fixture's: one line per step
    broken = Install(env={k: v for k, v in install.env.items() if not k.startswith("PIP_")},
                     log=folder / "install.log", patroni=folder / "patroni-venv",
                     venv=install.venv)
    broken.env.update(PATRONI_VENV=str(broken.patroni), TENIR_INSTALL_LOG=str(broken.log))
    # an index nobody listens on: pip fails the way an unreachable mirror makes it fail
    result = run(broken, PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple",
                 PIP_RETRIES="0", PIP_TIMEOUT="1")
    assert result.returncode != 0
    assert result.stdout.splitlines() == [f"Patroni venv: building {broken.patroni} ... FAILED"]
    assert f"FAILED (exit {result.returncode}): Patroni venv: building" in result.stderr
    assert "ERROR: Could not find a version that satisfies the requirement" in result.stderr
    assert str(broken.log) in result.stderr
    assert "ERROR: Could not find a version" in broken.log.read_text()


def test_no_packaged_service_is_enabled_at_boot_after_install(
        fresh: tuple[Install, subprocess.CompletedProcess[str]]) -> None:
    install, _ = fresh
    # what apt's postinst scripts do on a fresh machine
    enable = {"SYSTEMD_OFFLINE": "1"}
    try:
        for svc in ("etcd", "haproxy"):
            subprocess.run(["systemctl", "enable", f"{svc}.service"], env={**os.environ,
                           **enable}, capture_output=True, check=True)
        assert boot_links(), "systemctl enable made no link: this test would prove nothing"
        result = run(install)
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.match(r"boot services: disabling etcd haproxy \.\.\. done", result.stdout)
        assert boot_links() == []
        assert "at boot: etcd haproxy postgresql zookeeper disabled" in result.stdout
    finally:
        for svc in ("etcd", "haproxy"):
            subprocess.run(["systemctl", "disable", f"{svc}.service"], env={**os.environ,
                           **enable}, capture_output=True, check=False)
