"""Where the lab keeps its files, its secrets and its record of what it started.

Everything lives under one directory (``/var/lib/tenir/lab``, or ``$TENIR_LAB_DIR``):
``state.json`` records every machine the lab booted (host, PID and start time of its
``systemd-nspawn``), so that ``lab down`` and a later ``lab up`` touch exactly those;
``secrets.json`` (mode 600) the generated secrets; ``ssh/`` the lab's SSH key and the machines'
host keys; ``ansible/`` the playbook runs' logs; ``machines/<host>/`` each machine's disk.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.lab.machines import MachinePaths, MachineRecord

DEFAULT_LAB_DIR = Path("/var/lib/tenir/lab")
SECRET_NAMES = ("superuser", "replication", "rewind", "restapi", "app", "owner", "smpp",
                "token_operator", "token_oncall", "token_auditor",
                "ack_key", "voice_callback",  # link/callback URL signing; the carrier's HMAC
                "etcd_root", "etcd_patroni",  # etcd's root and Patroni's etcd user
                "zookeeper_nodes",  # the alert nodes' ZooKeeper digest user
                "haproxy_stats")  # HAProxy's read-only statistics page
# The lab's secrets as the roles' variables name them (the production inventory's vault holds
# the same variables).
SECRET_VARIABLES = {
    "patroni_superuser_password": "superuser",
    "patroni_replication_password": "replication",
    "patroni_rewind_password": "rewind",
    "patroni_restapi_password": "restapi",
    "tenir_node_db_password": "app",
    "tenir_node_db_owner_password": "owner",
    "tenir_node_smpp_password": "smpp",
    "carrier_sim_smpp_password": "smpp",
    # The lab's operator user's token is also the deployment's (it records each run's event).
    "tenir_deploy_token": "token_operator",
    "tenir_node_ack_key": "ack_key",
    "tenir_node_voice_callback_secret": "voice_callback",
    "carrier_sim_voice_callback_secret": "voice_callback",
    "etcd_root_password": "etcd_root",
    "patroni_etcd_password": "etcd_patroni",
    "tenir_node_zookeeper_password": "zookeeper_nodes",
    "haproxy_stats_password": "haproxy_stats",
}


def lab_dir() -> Path:
    return Path(os.environ.get("TENIR_LAB_DIR", str(DEFAULT_LAB_DIR)))


@dataclass
class LabState:
    inventory: str = ""
    machines: list[MachineRecord] = field(default_factory=list)
    keep_data: bool = False
    coordination: str = ""  # the coordination service the lab was brought up with
    deployed: str = ""  # digest of what the last successful site.yml run deployed

    def to_json(self) -> dict[str, Any]:
        return {"inventory": self.inventory, "keep_data": self.keep_data,
                "coordination": self.coordination, "deployed": self.deployed,
                "machines": [m.to_json() for m in self.machines]}

    def machine(self, host: str) -> MachineRecord | None:
        return next((m for m in self.machines if m.host == host), None)


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    def machine(self, host: str) -> MachinePaths:
        return MachinePaths(self.root / "machines" / host)

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def ssh_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def ansible_dir(self) -> Path:
        return self.root / "ansible"

    @property
    def pki_dir(self) -> Path:
        """The lab's CA and certificates (``ansible/pki.yml`` makes them here)."""
        return self.root / "pki"

    @property
    def extra_vars_file(self) -> Path:
        return self.root / "secrets.vars.yml"

    # --- state -------------------------------------------------------------------------------
    def load_state(self) -> LabState:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return LabState()
        machines = [MachineRecord.from_json(m) for m in data.get("machines", [])]
        keep_data = bool(data.get("keep_data", False))
        # A state written before ZooKeeper came to the lab does not say: it ran etcd.
        default = "etcd" if machines or keep_data else ""
        return LabState(
            inventory=str(data.get("inventory", "")),
            keep_data=keep_data,
            coordination=str(data.get("coordination", default)),
            deployed=str(data.get("deployed", "")),
            machines=machines,
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

    def secret_variables(self, secrets_: dict[str, str]) -> dict[str, str]:
        return {var: secrets_[name] for var, name in SECRET_VARIABLES.items()}

    # --- SSH ---------------------------------------------------------------------------------
    def ensure_ssh_key(self) -> str:
        """The lab's SSH key pair (made once); returns the public key."""
        self.ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.ssh_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tenir-lab",
                            "-f", str(self.ssh_key)], check=True, capture_output=True, timeout=30)
        return self.ssh_key.with_suffix(".pub").read_text().strip()

    def write_known_hosts(self, entries: dict[str, str]) -> None:
        """``address -> host key line``: what Ansible's SSH checks each machine against."""
        lines = []
        for address, key in sorted(entries.items()):
            kind, blob = key.split()[:2]
            lines.append(f"{address} {kind} {blob}")
        self.known_hosts.write_text("\n".join(lines) + "\n")

    # --- removal -----------------------------------------------------------------------------
    def remove_all(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
