"""Where the lab keeps its files, its secrets and its record of what it started.

Everything lives under one directory (``/var/lib/tenir/lab``, or ``$TENIR_LAB_DIR``), readable by
the ``postgres`` user where Patroni needs it. ``state.json`` records every process the lab started
(host, service, PID, start time), so that ``lab down`` and a later ``lab up`` stop exactly those.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.lab.procs import ProcessRecord

DEFAULT_LAB_DIR = Path("/var/lib/tenir/lab")
DEFAULT_PATRONI_BIN = Path("/opt/tenir/patroni-venv/bin/patroni")
SECRET_NAMES = ("superuser", "replication", "rewind", "restapi", "app", "smpp",
                "token_operator", "token_oncall", "token_auditor",
                "ack_key", "voice_callback")  # link/callback URL signing; the carrier's HMAC


def lab_dir() -> Path:
    return Path(os.environ.get("TENIR_LAB_DIR", str(DEFAULT_LAB_DIR)))


def patroni_bin() -> Path:
    return Path(os.environ.get("TENIR_PATRONI_BIN", str(DEFAULT_PATRONI_BIN)))


@dataclass
class LabState:
    inventory: str = ""
    records: list[ProcessRecord] = field(default_factory=list)
    keep_data: bool = False
    coordination: str = ""  # the coordination service the lab was brought up with

    def to_json(self) -> dict[str, Any]:
        return {"inventory": self.inventory, "keep_data": self.keep_data,
                "coordination": self.coordination,
                "records": [r.to_json() for r in self.records]}


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    def host_dir(self, host: str) -> Path:
        return self.root / "hosts" / host

    def etcd_data(self, host: str) -> Path:
        return self.host_dir(host) / "etcd"

    def zookeeper_data(self, host: str) -> Path:
        return self.host_dir(host) / "zookeeper"

    def pg_data(self, host: str) -> Path:
        return self.host_dir(host) / "pgdata"

    def pg_run(self, host: str) -> Path:
        return self.host_dir(host) / "run"

    def log(self, host: str, service: str) -> Path:
        return self.host_dir(host) / f"{service}.log"

    def config(self, host: str, name: str) -> Path:
        return self.host_dir(host) / name

    # --- state -------------------------------------------------------------------------------
    def load_state(self) -> LabState:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return LabState()
        records = [ProcessRecord.from_json(r) for r in data.get("records", [])]
        keep_data = bool(data.get("keep_data", False))
        # A state written before ZooKeeper came to the lab does not say: it ran etcd.
        default = "etcd" if records or keep_data else ""
        return LabState(
            inventory=str(data.get("inventory", "")),
            keep_data=keep_data,
            coordination=str(data.get("coordination", default)),
            records=records,
        )

    def save_state(self, state: LabState) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.to_json(), indent=2))
        tmp.replace(self.state_file)

    # --- secrets -----------------------------------------------------------------------------
    def load_or_create_secrets(self) -> dict[str, str]:
        """The lab's secrets; any that is missing is generated (existing ones are kept, since
        running servers use them)."""
        data = self.load_secrets() or {}
        missing = [k for k in SECRET_NAMES if not data.get(k)
                   or (k == "smpp" and len(data[k]) > 8)]
        if not missing:
            return data
        # SMPP 3.4 limits a password to 8 characters: 6 random bytes encode to 8.
        data.update({k: secrets.token_urlsafe(6 if k == "smpp" else 32) for k in missing})
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        return data

    def load_secrets(self) -> dict[str, str] | None:
        try:
            data = json.loads(self.secrets_file.read_text())
        except (OSError, ValueError):
            return None
        return {str(k): str(v) for k, v in data.items()}

    # --- directories -------------------------------------------------------------------------
    def prepare_host(self, host: str, postgres: bool, zookeeper_user: str | None = None) -> None:
        """The host's directory, and the data directories owned by the users the services
        run as: PostgreSQL's by ``postgres``, ZooKeeper's by ``zookeeper_user`` if given."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        (self.root / "hosts").mkdir(exist_ok=True)
        (self.root / "hosts").chmod(0o755)
        hdir = self.host_dir(host)
        hdir.mkdir(exist_ok=True)
        hdir.chmod(0o755)
        if postgres:
            pg = pwd.getpwnam("postgres")
            for d in (self.pg_data(host), self.pg_run(host)):
                d.mkdir(exist_ok=True)
                d.chmod(0o700)
                os.chown(d, pg.pw_uid, pg.pw_gid)
        if zookeeper_user is not None:
            zk = pwd.getpwnam(zookeeper_user)
            d = self.zookeeper_data(host)
            d.mkdir(exist_ok=True)
            d.chmod(0o750)
            os.chown(d, zk.pw_uid, zk.pw_gid)

    def write_file(self, path: Path, content: str, *, owner: str | None = None,
                   mode: int = 0o644) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(content)
        tmp.chmod(mode)
        if owner is not None:
            user = pwd.getpwnam(owner)
            os.chown(tmp, user.pw_uid, user.pw_gid)
        tmp.replace(path)

    def remove_all(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
