"""Process handling of the lab: a process is known by PID *and* start time, never signalled once
that pair no longer matches, and started detached from the caller."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from cluster.lab import procs
from cluster.wait import wait_for

pytestmark = pytest.mark.unit


def test_spawned_process_is_detached_and_known_by_pid_and_start_time(tmp_path: Path) -> None:
    log = tmp_path / "sleep.log"
    pid = procs.spawn(["sh", "-c", "echo started; exec sleep 30"], log)
    start = procs.start_time_of(pid)
    try:
        wait_for("the child to write its log", lambda: ("started" in log.read_text(), None, ""),
                 timeout=10)
        assert start is not None
        assert procs.is_running(pid, start)
        # Detached: its own session, and not a child of this process.
        assert os.getsid(pid) != os.getsid(0)
        assert Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[1] != str(os.getpid())
        # A different start time means another process reusing the PID: never ours.
        assert not procs.is_running(pid, start + 1)
        assert not procs.signal_process(pid, signal.SIGTERM, start + 1)
        assert procs.is_running(pid, start)
    finally:
        procs.stop([(pid, start)], timeout=5)
    assert not procs.is_running(pid, start)
    assert procs.wait_gone([(pid, start)], 2) == []


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    pid = procs.spawn(["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"],
                      tmp_path / "stubborn.log")
    start = procs.start_time_of(pid)
    procs.stop([(pid, start)], timeout=0.5)
    assert not procs.is_running(pid, start)


def test_postmaster_pid_ignores_a_pid_that_is_not_postgres(tmp_path: Path) -> None:
    (tmp_path / "postmaster.pid").write_text(f"{os.getpid()}\n/data\n")
    assert procs.postmaster_pid(tmp_path) is None
    (tmp_path / "postmaster.pid").write_text("not-a-pid\n")
    assert procs.postmaster_pid(tmp_path) is None
    assert procs.postmaster_pid(tmp_path / "missing") is None


def test_spawn_of_a_missing_program_leaves_nothing_running(tmp_path: Path) -> None:
    pid = procs.spawn(["/nonexistent/program"], tmp_path / "missing.log")
    assert procs.wait_gone([(pid, None)], 2) == []
