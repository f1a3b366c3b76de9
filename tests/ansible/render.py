"""Render an inventory's configuration files through Ansible itself (``render.yml``), so that
tests check what the roles derive from an inventory, not a copy of that logic.

Role defaults go in as the ``all`` group's variables of an inventory loaded first: the real
inventory's own variables (all, groups, hosts) and the extra variables then take precedence, as
they do over role defaults in a play.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
ROLES = ANSIBLE / "roles"
PLAYBOOK = Path(__file__).with_name("render.yml")


def role_defaults() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for defaults in sorted(ROLES.glob("*/defaults/main.yml")):
        merged.update(yaml.safe_load(defaults.read_text()) or {})
    return merged


def render_inventory(inventory: Path, out: Path, extra: Mapping[str, Any],
                     vault_password_file: Path | None = None) -> dict[str, dict[str, str]]:
    """``{host: {file name: text}}`` of every configuration the roles would write."""
    out.mkdir(parents=True, exist_ok=True)
    defaults = out / "role-defaults.yml"
    defaults.write_text(yaml.safe_dump({"all": {"vars": role_defaults()}}))
    extra_file = out / "extra.yml"
    extra_file.write_text(yaml.safe_dump({**dict(extra), "out_dir": str(out / "hosts"),
                                          "roles_dir": str(ROLES)}))
    bin_dir = Path(sys.executable).parent
    argv = [str(bin_dir / "ansible-playbook"), "-i", str(defaults), "-i", str(inventory),
            str(PLAYBOOK), "-e", f"@{extra_file}"]
    if vault_password_file is not None:
        argv += ["--vault-password-file", str(vault_password_file)]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(out / "tmp"), "TENIR_EVENTS": "off",
           "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300,
                          cwd=str(ANSIBLE))
    if proc.returncode != 0:
        raise AssertionError(f"rendering {inventory} failed:\n{proc.stdout[-4000:]}"
                             f"\n{proc.stderr[-2000:]}")
    result: dict[str, dict[str, str]] = {}
    for host_dir in sorted((out / "hosts").iterdir()):
        result[host_dir.name] = {f.name: f.read_text() for f in sorted(host_dir.iterdir())}
    return result
