"""How the lab deploys tenir: exactly as an operator would, with ``ansible-playbook``.

- ``wheelhouse``: tenir reaches the machines as a wheel built from the checkout, beside the
  wheels of its pinned dependencies and of Patroni's (``requirements/*.txt``). The machines have
  no route out of the lab, so the controller serves that wheelhouse on the lab bridge for the
  length of a run, as a production site would use its own package mirror. The wheel's version is
  ``<version>+lab.<hash of the sources>``: changed code is a new version, which the roles install
  and roll out.
- ``run_playbook``: runs one of ``ansible/*.yml`` against the inventory with the lab's SSH key,
  known hosts and secrets (an extra-vars file of mode 600), keeps the full output in a log and
  returns the recap per host.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
PACKAGES = ("cluster", "nodes", "failover", "replication", "chaos")
DEFAULT_WHEELHOUSE = Path("/var/cache/tenir/wheelhouse")
WHEELHOUSE_PORT = 8765

Say = Callable[[str], None]


class DeployError(RuntimeError):
    pass


def wheelhouse_dir() -> Path:
    return Path(os.environ.get("TENIR_WHEELHOUSE", str(DEFAULT_WHEELHOUSE)))


def base_version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    if match is None:
        raise DeployError("pyproject.toml names no version")
    return match.group(1)


def source_digest() -> str:
    """A hash of everything that goes into the wheel."""
    digest = hashlib.sha256()
    files = [REPO / "pyproject.toml"]
    for package in PACKAGES:
        files += sorted(p for p in (REPO / package).rglob("*")
                        if p.is_file() and p.suffix in (".py", ".sql", ".typed", ".md", ".json",
                                                        ".j2", ".html", ".css")
                        and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def lab_version() -> str:
    return f"{base_version()}+lab.{source_digest()}"


def deployment_digest(inventory: Path, values: Mapping[str, Any]) -> str:
    """What a site.yml run depends on: the playbooks and roles, the inventory, the pinned
    requirements, the sources (the wheel's version) and the extra variables. Unchanged, a run
    would change nothing."""
    digest = hashlib.sha256(lab_version().encode())
    trees = [ANSIBLE_DIR, inventory, REPO / "requirements"]
    for tree in trees:
        for path in sorted(p for p in tree.rglob("*") if p.is_file()
                           and "__pycache__" not in p.parts):
            digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(json.dumps(dict(values), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _pip(args: Sequence[str], log: Path, timeout: float = 900) -> None:
    with log.open("a") as out:
        proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check",
                               "-q", *args], stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise DeployError(f"pip {' '.join(args[:2])} failed (log {log}):\n{tail}")


def build_wheelhouse(say: Say, version: str | None = None) -> tuple[Path, str]:
    """The wheelhouse with tenir at ``version`` (default: this checkout's lab version);
    returns (dir, version)."""
    wh = wheelhouse_dir()
    wh.mkdir(parents=True, exist_ok=True)
    log = wh / "build.log"
    locks = [REPO / "requirements" / "lock.txt", REPO / "requirements" / "patroni-lock.txt",
             REPO / "pyproject.toml"]
    deps_key = hashlib.sha256(b"".join(p.read_bytes() for p in locks)).hexdigest()[:12]
    marker = wh / f".deps-{deps_key}"
    version = version or lab_version()
    wheel_name = f"tenir-{version}-py3-none-any.whl"
    if not marker.exists():
        say("building the wheelhouse of tenir's and Patroni's pinned dependencies (once)")
        log.write_text("")
        _pip(["wheel", "-w", str(wh), "-r", str(REPO / "requirements" / "patroni-lock.txt")], log)
        runtime = _runtime_requirements()
        _pip(["wheel", "-w", str(wh), "-c", str(REPO / "requirements" / "lock.txt"), *runtime],
             log)
        for old in wh.glob(".deps-*"):
            old.unlink()
        marker.write_text(deps_key)
    if not (wh / wheel_name).exists():
        say(f"building the tenir wheel {version}")
        with tempfile.TemporaryDirectory(prefix="tenir-wheel-") as tmp:
            src = Path(tmp) / "src"
            shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
                ".git", ".venv", "*.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache",
                ".pytest_cache", "bench", "tests", "docs", "ansible", "inventories", "build"))
            pyproject = src / "pyproject.toml"
            pyproject.write_text(re.sub(r'^version\s*=\s*"[^"]+"', f'version = "{version}"',
                                        pyproject.read_text(), count=1, flags=re.M))
            _pip(["wheel", "--no-deps", "-w", str(wh), str(src)], log)
        for old in wh.glob("tenir-*.whl"):
            if old.name != wheel_name:
                old.unlink()
    return wh, version


def _runtime_requirements() -> list[str]:
    """The project's runtime dependencies, as pyproject.toml lists them."""
    import tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [str(d) for d in data["project"]["dependencies"]]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextlib.contextmanager
def serve_directory(directory: Path, address: str, port: int = WHEELHOUSE_PORT) -> Iterator[str]:
    """Serve ``directory`` over HTTP on ``address`` (the lab bridge) while the block runs."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((address, port), handler)
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass(frozen=True)
class HostRecap:
    host: str
    ok: int
    changed: int
    unreachable: int
    failed: int
    skipped: int

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "ok": self.ok, "changed": self.changed,
                "unreachable": self.unreachable, "failed": self.failed, "skipped": self.skipped}


@dataclass(frozen=True)
class PlaybookRun:
    playbook: str
    returncode: int
    recap: tuple[HostRecap, ...]
    log: Path
    seconds: float

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.recap)

    @property
    def ok(self) -> bool:
        """It ran on some host and failed on none (a run that matched no host, say an
        inventory path Ansible could not parse, exits 0 having done nothing)."""
        return (self.returncode == 0 and bool(self.recap)
                and not any(h.failed or h.unreachable for h in self.recap))

    def summary(self) -> str:
        bad = [h.host for h in self.recap if h.failed or h.unreachable]
        return (f"{self.playbook}: {len(self.recap)} hosts, {self.changed} changes"
                + (f", FAILED on {', '.join(bad)}" if bad else "")
                + (", NO HOST MATCHED (is the inventory path right?)" if not self.recap else "")
                + f" in {self.seconds:.0f} s")


_RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                    r"\s+skipped=(\d+)")


def parse_recap(output: str) -> tuple[HostRecap, ...]:
    lines = output.splitlines()
    try:
        start = max(i for i, line in enumerate(lines) if line.startswith("PLAY RECAP"))
    except ValueError:
        return ()
    out = []
    for line in lines[start + 1:]:
        m = _RECAP.match(line.strip())
        if m:
            host, *numbers = m.groups()
            ok, changed, unreachable, failed, skipped = (int(n) for n in numbers)
            out.append(HostRecap(host, ok, changed, unreachable, failed, skipped))
    return tuple(out)


def write_extra_vars(path: Path, values: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(dict(values), fh, default_flow_style=False)


def run_playbook(playbook: str, inventory: Path, extra_vars: Sequence[Path], ssh_key: Path,
                 known_hosts: Path, log_dir: Path, say: Say, *, limit: str | None = None,
                 extra_args: Sequence[str] = (), timeout: float = 1800) -> PlaybookRun:
    started = time.monotonic()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{Path(playbook).stem}.log"
    bin_dir = Path(sys.executable).parent
    argv = [str(bin_dir / "ansible-playbook"), "-i", str(inventory), str(ANSIBLE_DIR / playbook),
            "--private-key", str(ssh_key), "-u", "root"]
    for f in extra_vars:
        argv += ["-e", f"@{f}"]
    if limit:
        argv += ["--limit", limit]
    argv += list(extra_args)
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_SSH_ARGS": ("-o ControlMaster=auto -o ControlPersist=120s "
                             f"-o ControlPath={log_dir}/cp-%C -o UserKnownHostsFile={known_hosts} "
                             "-o StrictHostKeyChecking=yes -o ConnectTimeout=10"),
        "ANSIBLE_LOCAL_TEMP": str(log_dir / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{bin_dir}:{env.get('PATH', '')}",
    })
    say(f"running ansible/{playbook} against {inventory} (log {log})")
    with log.open("w") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                              timeout=timeout, check=False, cwd=str(ANSIBLE_DIR))
    text = log.read_text(errors="replace")
    run = PlaybookRun(playbook, proc.returncode, parse_recap(text), log,
                      time.monotonic() - started)
    say(run.summary())
    return run


def failure_excerpt(run: PlaybookRun, lines: int = 30) -> str:
    """The lines of a failed run's log that say what failed."""
    text = run.log.read_text(errors="replace").splitlines()
    hits = [i for i, line in enumerate(text) if line.startswith(("fatal:", "failed:"))
            or "FAILED!" in line or "UNREACHABLE!" in line]
    if not hits:
        return "\n".join(text[-lines:])
    keep: list[int] = []
    for i in hits[:5]:
        keep += [j for j in range(max(0, i - 2), min(len(text), i + 4)) if j not in keep]
    return "\n".join(text[j][:600] for j in keep)


_FAILED_SERVICE = re.compile(
    r'^fatal: \[([^\]]+)\]: FAILED! => .*"Unable to \w+ service ([\w@.-]+)')


def failed_services(excerpt: str) -> list[tuple[str, str]]:
    """(host, unit) of each service a failed run could not start, stop or restart, in order:
    their journals say why, which Ansible's message ("see journalctl") does not."""
    found: list[tuple[str, str]] = []
    for line in excerpt.splitlines():
        m = _FAILED_SERVICE.match(line)
        if m and (m[1], m[2]) not in found:
            found.append((m[1], m[2]))
    return found


def recap_json(run: PlaybookRun) -> str:
    return json.dumps([h.to_json() for h in run.recap])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cluster.lab.deploy [--release]``: build the wheelhouse (``$TENIR_WHEELHOUSE``)
    and say where; ``--release`` names the wheel by the project's version alone, for a
    production package source, instead of the lab's ``+lab.<hash>``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cluster.lab.deploy",
                                     description="build tenir's wheelhouse")
    parser.add_argument("--release", action="store_true",
                        help=f"version {base_version()} instead of {lab_version()}")
    args = parser.parse_args(argv)
    wh, version = build_wheelhouse(print, version=base_version() if args.release else None)
    print(f"wheelhouse {wh}: tenir {version} and its pinned dependencies, and Patroni's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
