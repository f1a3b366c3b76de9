"""Lab machines: one systemd-nspawn machine per inventory host, booted in the host's network
namespace, with its own systemd as PID 1 and its own root filesystem (an overlay whose lower layer
is the shared image, ``image.py``; its upper layer is the machine's disk).

A machine is known by the PID and start time of its ``systemd-nspawn`` process (recorded in the
lab's state), so that nothing else is ever signalled. Its init is that process's only child.

- ``boot``: mount the overlay (seeding a new disk with its hostname, machine id, SSH host key and
  the lab's authorized key), start ``systemd-nspawn --boot`` detached, wait for sshd.
- ``kill``: SIGKILL the machine's init. The kernel ends every process of the machine at once and
  nobody is told: a power cut. Its disk stays; ``boot`` starts it again, and its own systemd
  starts the services that were enabled.
- ``poweroff``: ask its systemd to power off (SIGRTMIN+4), then kill what remains after a deadline.
- ``run``: a command inside the machine (all its namespaces, through ``nsenter``), for the lab's
  own checks and faults; Ansible reaches machines through SSH, as it reaches production.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.lab import procs

SIGRTMIN_POWEROFF = int(signal.SIGRTMIN) + 4  # systemd: power off


class MachineError(RuntimeError):
    pass


@dataclass(frozen=True)
class MachineRecord:
    host: str
    pid: int  # systemd-nspawn's
    start_time: int | None
    image: str

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "start_time": self.start_time,
                "image": self.image}

    @staticmethod
    def from_json(data: dict[str, Any]) -> MachineRecord:
        st = data.get("start_time")
        return MachineRecord(str(data["host"]), int(data["pid"]),
                             int(st) if st is not None else None, str(data.get("image", "")))

    def running(self) -> bool:
        return procs.is_running(self.pid, self.start_time)


@dataclass(frozen=True)
class MachinePaths:
    base: Path

    @property
    def upper(self) -> Path:
        return self.base / "disk"

    @property
    def work(self) -> Path:
        return self.base / "overlay-work"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def console(self) -> Path:
        return self.base / "console.log"

    @property
    def journal(self) -> Path:
        return self.root / "var" / "log" / "journal"


def is_mounted(path: Path) -> bool:
    target = str(path.resolve()) if path.exists() else str(path)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def mount_overlay(paths: MachinePaths, image: Path) -> None:
    for d in (paths.upper, paths.work, paths.root):
        d.mkdir(parents=True, exist_ok=True)
    if is_mounted(paths.root):
        return
    opts = f"lowerdir={image},upperdir={paths.upper},workdir={paths.work}"
    proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(paths.root)],
                          capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise MachineError(f"mounting the disk of {paths.base.name}: {proc.stderr.strip()}")


def unmount(paths: MachinePaths) -> None:
    if paths.root.exists() and is_mounted(paths.root):
        proc = subprocess.run(["umount", str(paths.root)], capture_output=True, text=True,
                              timeout=30, check=False)
        if proc.returncode != 0:  # something still holds it: detach it, the kernel frees it later
            subprocess.run(["umount", "-l", str(paths.root)], capture_output=True, timeout=30,
                           check=False)


def seed_disk(paths: MachinePaths, host: str, hosts: Sequence[tuple[str, ipaddress.IPv4Address]],
              authorized_key: str) -> str:
    """What a new machine gets before its first boot: its name, a machine id, an SSH host key
    of its own, the lab's authorized key and the lab's hosts. Returns its host key line."""
    root = paths.root
    (root / "etc" / "hostname").write_text(host + "\n")
    (root / "etc" / "machine-id").write_text(secrets.token_hex(16) + "\n")
    key = root / "etc" / "ssh" / "ssh_host_ed25519_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host, "-f", str(key)],
                       check=True, capture_output=True, timeout=30)
    sshd = root / "etc" / "ssh" / "sshd_config.d" / "tenir-lab.conf"
    sshd.parent.mkdir(parents=True, exist_ok=True)
    sshd.write_text("# The lab's machines: keys only, no DNS lookups of clients.\n"
                    "HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\n"
                    "PermitRootLogin prohibit-password\nUseDNS no\n")
    dot_ssh = root / "root" / ".ssh"
    dot_ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    auth = dot_ssh / "authorized_keys"
    auth.write_text(authorized_key.strip() + "\n")
    auth.chmod(0o600)
    lines = ["127.0.0.1 localhost", f"127.0.1.1 {host}",
             *(f"{addr} {name}" for name, addr in hosts)]
    (root / "etc" / "hosts").write_text("\n".join(lines) + "\n")
    return key.with_suffix(".pub").read_text().strip()


def host_key(paths: MachinePaths) -> str | None:
    try:
        return (paths.root / "etc" / "ssh" / "ssh_host_ed25519_key.pub").read_text().strip()
    except OSError:
        return None


def boot(paths: MachinePaths, host: str, namespace: str, image: Path) -> MachineRecord:
    argv = ["systemd-nspawn", "--register=no", "--keep-unit", "--quiet", "--boot",
            "-D", str(paths.root), f"--machine={host}",
            f"--network-namespace-path=/run/netns/{namespace}",
            "--console=passive", "--link-journal=no", "--resolv-conf=off", "--timezone=off"]
    pid = procs.spawn(argv, paths.console)
    return MachineRecord(host, pid, procs.start_time_of(pid), str(image))


PROPAGATE = Path("/run/systemd/nspawn/propagate")


def clear_stale(host: str) -> None:
    """What a machine's last systemd-nspawn may have left in /run (its propagation directory,
    still mounted when the machine died hard): the next nspawn of that name refuses to start
    ("Attempted to remove disk file system under ..."), seen after power cuts."""
    path = PROPAGATE / host
    if not path.exists():
        return
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=30)
    shutil.rmtree(path, ignore_errors=True)


def console_tail(paths: MachinePaths, lines: int = 5) -> str:
    """The last lines of a machine's console log, escape codes dropped, on one line."""
    try:
        text = paths.console.read_text(errors="replace")
    except OSError:
        return "no console log"
    kept = [re.sub(r"\x1b\[[0-9;]*m", "", x).strip() for x in text.splitlines() if x.strip()]
    return " | ".join(kept[-lines:]) or "empty"


def leader(rec: MachineRecord) -> int | None:
    """The machine's init (PID 1 inside it), as the host sees it."""
    if not rec.running():
        return None
    try:
        children = Path(f"/proc/{rec.pid}/task/{rec.pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def run(rec: MachineRecord, argv: Sequence[str], timeout: float = 30.0,
        check: bool = False) -> subprocess.CompletedProcess[str]:
    init = leader(rec)
    if init is None:
        raise MachineError(f"machine {rec.host} is not running")
    proc = subprocess.run(["nsenter", f"--target={init}", "--mount", "--uts", "--ipc", "--net",
                           "--pid", "--cgroup", "--", *argv],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise MachineError(f"{rec.host}: {' '.join(argv)} exited with {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def starting_units(rec: MachineRecord) -> list[str]:
    """The units the machine's systemd is still starting (its job queue); [] if it cannot
    say."""
    try:
        jobs = run(rec, ["systemctl", "list-jobs", "--no-legend", "--no-pager"], timeout=10)
    except (MachineError, subprocess.TimeoutExpired):
        return []
    return sorted({line.split()[1] for line in jobs.stdout.splitlines()
                   if len(line.split()) > 1})


def wait_booted(rec: MachineRecord, timeout: float, slow_after: float | None = None,
                say: Callable[[str], None] | None = None) -> str:
    """Wait until the machine's systemd finished starting up; return its state. Once, past
    ``slow_after`` seconds, ``say`` is told which units are still starting."""
    started = time.monotonic()
    deadline = started + timeout
    last = ""
    slow_at = None if say is None or slow_after is None else started + slow_after
    while time.monotonic() < deadline:
        if slow_at is not None and say is not None and time.monotonic() > slow_at:
            slow_at = None
            units = ", ".join(starting_units(rec)[:4]) or "no job listed"
            say(f"machine {rec.host} still starting after {slow_after:.0f} s ({units}); "
                f"waiting up to {timeout:.0f} s")
        if not rec.running():
            raise MachineError(f"machine {rec.host} stopped while booting; see its console log")
        if leader(rec) is not None:
            try:
                proc = run(rec, ["systemctl", "is-system-running"], timeout=10)
                last = proc.stdout.strip()
            except (MachineError, subprocess.TimeoutExpired):
                last = "unreachable"
            if last in ("running", "degraded"):
                return last
        time.sleep(0.2)
    raise MachineError(f"machine {rec.host} did not finish booting within {timeout:.0f} s "
                       f"(systemd says {last or 'nothing'})")


def kill(rec: MachineRecord) -> bool:
    """A power cut: SIGKILL the machine's init; every process of the machine ends with it."""
    init = leader(rec)
    if init is None:
        return False
    procs.signal_process(init, signal.SIGKILL)
    procs.wait_gone([(rec.pid, rec.start_time)], 10.0)
    return True


def poweroff(rec: MachineRecord, timeout: float) -> None:
    init = leader(rec)
    if init is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, SIGRTMIN_POWEROFF)
        if not procs.wait_gone([(rec.pid, rec.start_time)], timeout):
            return
        kill(rec)
    if rec.running():
        procs.stop([(rec.pid, rec.start_time)], 5.0)


def remove_disk(paths: MachinePaths) -> None:
    unmount(paths)
    if paths.base.exists():
        shutil.rmtree(paths.base)


def processes(rec: MachineRecord) -> list[dict[str, str]]:
    """Every process of the machine with its user and command (``ps`` inside it)."""
    proc = run(rec, ["ps", "-eo", "user:32=,pid=,comm="], check=True)
    out = []
    for line in proc.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3:
            out.append({"user": parts[0], "pid": parts[1], "command": parts[2]})
    return out


def journal(paths: MachinePaths, unit: str | None = None, lines: int | None = None) -> str:
    """The machine's journal (or one unit's), read from its disk: works on a dead machine too."""
    argv = ["journalctl", "-D", str(paths.journal), "--no-pager", "-o", "short-iso-precise"]
    if unit:
        argv += ["-u", unit]
    if lines:
        argv += ["-n", str(lines)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout



def host_pid(rec: MachineRecord, inner: int) -> int | None:
    """The host's PID of the machine's process ``inner`` (a PID inside the machine)."""
    init = leader(rec)
    if init is None:
        return None
    try:
        ns = os.readlink(f"/proc/{init}/ns/pid")
    except OSError:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and line.split()[-1] == str(inner):
                return int(entry)
    return None
