"""The preflight play refuses, before any change and without contacting a host, a cluster that
would not hold; each refusal names the host or the variable."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.lab.layout import SECRET_VARIABLES
from nodes.users import token_digest
from tests.ansible.render import ANSIBLE, REPO

LAB = yaml.safe_load((REPO / "inventories" / "lab" / "hosts.yml").read_text())
SECRETS = {var: f"s3cret-{var}" for var in SECRET_VARIABLES} | {
    "tenir_version": "0.1.0",
    "tenir_node_users": [{"name": "deploy", "role": "operator",
                          "token_sha256": token_digest("s3cret-tenir_deploy_token")}]}


def preflight(tmp_path: Path, inventory: dict[str, Any], extra: dict[str, Any] | None = None,
              limit: str | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "inv").mkdir(exist_ok=True)
    (tmp_path / "inv" / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    extra_file = tmp_path / "extra.yml"
    extra_file.write_text(yaml.safe_dump(SECRETS if extra is None else extra))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "TENIR_EVENTS": "off",
           "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    return subprocess.run([str(bin_dir / "ansible-playbook"), "-i", str(tmp_path / "inv"),
                           str(ANSIBLE / "preflight.yml"), "-e", f"@{extra_file}",
                           *(["--limit", limit] if limit else [])],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ANSIBLE)


def test_the_shipped_lab_passes(tmp_path: Path) -> None:
    proc = preflight(tmp_path, LAB)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "unreachable=0" in proc.stdout and "failed=0" in proc.stdout


def test_a_run_limited_to_some_hosts_still_judges_the_whole_topology(tmp_path: Path) -> None:
    """Measured on the lab: `--limit paris-db,marseille-db` made the witness invisible to the
    preflight, which then refused a sound topology."""
    proc = preflight(tmp_path, LAB, limit="paris-db,marseille-db")
    assert proc.returncode == 0, proc.stdout[-3000:]


def _two_plus_two() -> dict[str, Any]:
    """Two datacenters of two coordination members each, no witness."""
    inv = copy.deepcopy(LAB)
    children = inv["all"]["children"]
    del children["sites"]["children"]["witness"]
    del children["evidence_witness"]
    children["sites"]["children"]["paris"]["hosts"]["paris-node1"] = {"ansible_host": "10.213.0.12"}
    children["etcd"]["hosts"] = {"paris-db": None, "paris-node1": None, "marseille-db": None,
                                 "marseille-node1": None}
    children["zookeeper"]["hosts"] = dict(children["etcd"]["hosts"])
    return inv


def test_two_datacenters_without_a_witness_are_refused(tmp_path: Path) -> None:
    proc = preflight(tmp_path, _two_plus_two())
    assert proc.returncode != 0
    assert "1 datacenter" not in proc.stdout
    assert ("the inventory has 2 datacenter site(s) (marseille, paris) and 0 witness site(s): "
            "tenir needs two datacenters and a witness site") in proc.stdout, proc.stdout[-3000:]


def test_every_coordination_member_in_one_datacenter_is_refused(tmp_path: Path) -> None:
    inv = copy.deepcopy(LAB)
    sites = inv["all"]["children"]["sites"]["children"]
    sites["paris"]["hosts"]["paris-node1"] = {"ansible_host": "10.213.0.12"}
    inv["all"]["children"]["etcd"]["hosts"] = {"paris-db": None, "paris-node1": None,
                                               "paris-node2": None}
    proc = preflight(tmp_path, inv)
    assert proc.returncode != 0
    assert "losing site paris leaves 0 of 3 members" in proc.stdout, proc.stdout[-3000:]
    assert "paris-db, paris-node1, paris-node2" in proc.stdout


def test_a_patroni_timing_that_breaks_its_rule_is_refused(tmp_path: Path) -> None:
    inv = copy.deepcopy(LAB)
    inv["all"]["vars"]["patroni_retry_timeout"] = 10  # 2 + 2*10 > 20
    proc = preflight(tmp_path, inv)
    assert proc.returncode != 0
    assert "patroni_retry_timeout 10" in proc.stdout
    assert "loop_wait + 2 * retry_timeout <= ttl" in proc.stdout


def test_a_batch_lease_shorter_than_a_patroni_failover_is_refused(tmp_path: Path) -> None:
    inv = copy.deepcopy(LAB)
    inv["all"]["vars"]["tenir_node_lease_s"] = 15  # 13/18 of 15 = 10.8 s < 20 + 2 + 2
    proc = preflight(tmp_path, inv)
    assert proc.returncode != 0
    text = " ".join(proc.stdout.split())
    assert "tenir_node_lease_s 15: a node sends from a batch it cannot renew for 13/18 of its " \
           "lease (10.8 s), less than a Patroni failover (ttl + loop_wait + 2 = 24 s): set it " \
           "to at least 34" in text, text
    inv["all"]["vars"]["tenir_node_lease_s"] = 34
    assert preflight(tmp_path, inv).returncode == 0


def test_too_little_wal_kept_for_a_rewound_primary_is_refused(tmp_path: Path) -> None:
    inv = copy.deepcopy(LAB)
    inv["all"]["vars"]["patroni_max_wal_size_mb"] = 1024
    inv["all"]["vars"]["patroni_wal_keep_size_mb"] = 256  # the lab's before 2026-11-30
    proc = preflight(tmp_path, inv)
    assert proc.returncode != 0
    assert "patroni_wal_keep_size_mb 256 is below" in proc.stdout
    assert "patroni_max_wal_size_mb 1024" in proc.stdout


def test_the_preflights_fallbacks_are_the_roles_defaults() -> None:
    """The preflight runs before any role, so it cannot see their defaults and repeats them
    (``patroni_wal_keep_size_mb | default(1024)``); a role default changed alone would leave
    the preflight checking another value."""
    text = (ANSIBLE / "preflight.yml").read_text()
    fallbacks = set(re.findall(r"\b(patroni_\w+) \| default\((\d+)\)", text))
    defaults = yaml.safe_load((ANSIBLE / "roles" / "patroni" / "defaults" / "main.yml"
                               ).read_text())
    assert fallbacks, "the preflight names no patroni default"
    for name, value in fallbacks:
        assert defaults[name] == int(value), (name, value, defaults[name])


def test_a_missing_secret_is_refused_by_name(tmp_path: Path) -> None:
    extra = {k: v for k, v in SECRETS.items() if k != "patroni_replication_password"}
    proc = preflight(tmp_path, LAB, extra)
    assert proc.returncode != 0
    assert "secret patroni_replication_password is not set" in proc.stdout


def test_no_deployment_user_among_the_api_users_is_refused(tmp_path: Path) -> None:
    extra = {**SECRETS, "tenir_node_users": [{"name": "someone", "role": "operator",
                                              "token_sha256": token_digest("another-token")}]}
    proc = preflight(tmp_path, LAB, extra)
    assert proc.returncode != 0
    assert "one of them must hold tenir_deploy_token" in proc.stdout


def test_a_host_in_no_site_is_refused_by_name(tmp_path: Path) -> None:
    inv = copy.deepcopy(LAB)
    inv["all"]["children"]["alert_nodes"]["hosts"]["stray-node"] = {"ansible_host": "10.213.0.99"}
    proc = preflight(tmp_path, inv)
    assert proc.returncode != 0
    assert "host stray-node: it stands in no site" in proc.stdout


PLAYBOOKS = ["site.yml", "rolling_upgrade.yml", "add_node.yml", "remove_node.yml",
             "switchover.yml", "preflight.yml", "patroni_config.yml", "pki.yml",
             "evidence_keys.yml", "drill.yml", "nodes.yml"]


def test_the_list_names_every_playbook() -> None:
    assert sorted(PLAYBOOKS) == sorted(p.name for p in ANSIBLE.glob("*.yml"))


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_every_playbook_parses(playbook: str, tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path), "TENIR_EVENTS": "off"}
    proc = subprocess.run([str(bin_dir / "ansible-playbook"), "-i", str(REPO / "inventories" /
                                                                         "lab"),
                           "--syntax-check", str(ANSIBLE / playbook)], capture_output=True,
                          text=True, env=env, timeout=120, cwd=ANSIBLE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
