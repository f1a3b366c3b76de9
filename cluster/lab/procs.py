"""Starting and stopping the lab's processes, by PID, and telling whether they still run.

A process is started detached (double fork, new session) inside a host's namespace, so it belongs
to no CLI invocation and no test process. Its identity is (pid, start time): a PID reused by some
other process after ours died is never mistaken for ours, and never signalled.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ProcessRecord:
    host: str
    service: str
    pid: int
    start_time: int
    log: str
    config_sha: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessRecord:
        return cls(
            host=str(data["host"]), service=str(data["service"]), pid=int(data["pid"]),
            start_time=int(data["start_time"]), log=str(data["log"]),
            config_sha=str(data.get("config_sha", "")),
        )


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def start_time_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_running(pid: int, start_time: int | None = None) -> bool:
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


def spawn(argv: list[str], log_path: Path, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached from this process; return its PID (the exec'd program's)."""
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # first child: new session, fork again, report the grandchild's PID, exit
        try:
            os.close(read_fd)
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                os.close(write_fd)
                fd = os.open(str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.closerange(3, 65536)
                if cwd is not None:
                    os.chdir(cwd)
                os.execvpe(argv[0], argv, env if env is not None else dict(os.environ))
            os.write(write_fd, str(grandchild).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(child, 0)
    with os.fdopen(read_fd) as reader:
        text = reader.read()
    if not text:
        raise RuntimeError(f"could not start {argv[0]}")
    return int(text)


def signal_process(pid: int, sig: signal.Signals, start_time: int | None = None) -> bool:
    """Send ``sig`` if the process is still the one we started. Returns whether it was sent."""
    if not is_running(pid, start_time):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: list[tuple[int, int | None]], timeout: float) -> list[tuple[int, int | None]]:
    """Wait until none of ``pids`` runs; return those still running after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if is_running(*p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if is_running(*p)]
    return alive


def stop(pids: list[tuple[int, int | None]], timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL what remains and wait for it."""
    for pid, st in pids:
        signal_process(pid, signal.SIGTERM, st)
    left = wait_gone(pids, timeout)
    for pid, st in left:
        signal_process(pid, signal.SIGKILL, st)
    wait_gone(left, 5.0)


def postmaster_pid(data_dir: Path) -> int | None:
    """The PID written in ``postmaster.pid`` if that process is a live postgres, else None."""
    try:
        first = (data_dir / "postmaster.pid").read_text().splitlines()[0]
        pid = int(first.strip())
    except (OSError, ValueError, IndexError):
        return None
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return pid if comm.startswith("postgres") and is_running(pid) else None
