"""What the roles render from the shipped inventories, through Ansible itself: the lab's
(with etcd and with ZooKeeper) and the production example's."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from cluster.lab.layout import SECRET_VARIABLES
from nodes.users import token_digest
from tests.ansible.render import REPO, render_inventory
from tests.tls_kit import TestPki

LAB = REPO / "inventories" / "lab"
PRODUCTION = REPO / "inventories" / "production-example"
VAULT_PASSWORD = PRODUCTION / "vault-password.example"
SECRETS = {var: f"s3cret-{var}-Zq8vTn-0123456789abcdef" for var in SECRET_VARIABLES}
TOKENS = {role: f"token-of-{role}-Zq8vTn-0123456789" for role in ("oncall", "auditor")}
USERS = [{"name": "lab-operator", "role": "operator",
          "token_sha256": token_digest(SECRETS["tenir_deploy_token"])},
         *({"name": f"lab-{r}", "role": r, "token_sha256": token_digest(t)}
           for r, t in TOKENS.items())]
LAB_EXTRA = {**SECRETS, "tenir_version": "0.1.0", "tenir_node_users": USERS}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    return render_inventory(LAB, tmp_path_factory.mktemp("lab"), LAB_EXTRA)


@pytest.fixture(scope="module")
def lab_zk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    return render_inventory(LAB, tmp_path_factory.mktemp("labzk"),
                            {**LAB_EXTRA, "tenir_coordination": "zookeeper"})


def tls_dir(path: Path, pem: bool = False) -> Path:
    """What role tenir_tls puts on a machine (ca.crt, host.crt, host.key, host.pem), made by the
    code the pki play runs."""
    if not (path / "host.crt").exists():
        TestPki(path).files("host")
        if pem:
            (path / "host.pem").write_text((path / "host.key").read_text()
                                           + (path / "host.crt").read_text())
    return path


def _zoo_cfg(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines()
             if line.strip() and not line.startswith("#"))
    return {k: v for k, v in pairs}


def test_each_host_gets_the_files_of_its_groups(lab: dict[str, dict[str, str]]) -> None:
    assert sorted(lab["paris-db"]) == ["etcd.conf.yml", "haproxy.cfg", "myid", "patroni.yml",
                                       "zoo.cfg"]
    assert sorted(lab["witness-quorum"]) == ["etcd.conf.yml", "myid", "witness.yml", "zoo.cfg"]
    assert sorted(lab["paris-node1"]) == ["node.yml", "tenir-node.service"]
    assert sorted(lab["marseille-carriers"]) == ["tenir-carriers.service"]


def test_etcd_members_come_from_the_group(lab: dict[str, dict[str, str]]) -> None:
    for host in ("paris-db", "marseille-db", "witness-quorum"):
        conf = yaml.safe_load(lab[host]["etcd.conf.yml"])
        assert conf["name"] == host
        assert conf["initial-cluster"] == (
            "paris-db=https://10.213.0.11:2380,"
            "marseille-db=https://10.213.0.21:2380,"
            "witness-quorum=https://10.213.0.31:2380")
        assert conf["initial-cluster-token"] == "tenir-lab-etcd"
        assert conf["pre-vote"] is True and conf["enable-grpc-gateway"] is True


def test_patroni_knows_its_site_timings_and_secrets(lab: dict[str, dict[str, str]]) -> None:
    for host, site in (("paris-db", "paris"), ("marseille-db", "marseille")):
        conf = yaml.safe_load(lab[host]["patroni.yml"])
        assert (conf["scope"], conf["name"], conf["tags"]["site"]) == ("tenir-lab", host, site)
        dcs = conf["bootstrap"]["dcs"]
        assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 2, 4)
        assert dcs["synchronous_mode"] is True
        # an old primary rewound after a failover finds the WAL it replays (up to a
        # checkpoint distance, max_wal_size, back)
        params = dcs["postgresql"]["parameters"]
        assert (params["max_wal_size"], params["wal_keep_size"]) == ("512MB", "1024MB")
        assert conf["etcd3"]["hosts"] == ["10.213.0.11:2379", "10.213.0.21:2379",
                                          "10.213.0.31:2379"]
        pg = conf["postgresql"]
        assert pg["authentication"]["superuser"]["password"] == SECRETS[
            "patroni_superuser_password"]
        assert conf["restapi"]["authentication"]["password"] == SECRETS[
            "patroni_restapi_password"]
        assert "hostssl all all 10.213.0.0/24 scram-sha-256" in pg["pg_hba"]


def test_haproxy_routes_to_both_members_and_passes_its_check(
        lab: dict[str, dict[str, str]], tmp_path: Path) -> None:
    for host, address in (("paris-db", "10.213.0.11"), ("marseille-db", "10.213.0.21")):
        text = lab[host]["haproxy.cfg"]
        assert re.search(rf"^\s*bind {re.escape(address)}:5000$", text, re.M)
        assert re.findall(r"^\s*server (\S+) (\S+) ", text, re.M) == [
            ("paris-db", "10.213.0.11:5432"), ("marseille-db", "10.213.0.21:5432")]
        assert not re.search(r"^\s*user ", text, re.M)  # systemd starts it as haproxy
        config = tmp_path / f"{host}.cfg"
        tls = tls_dir(tmp_path / "tls", pem=True)
        config.write_text(text.replace("/run/haproxy/", f"{tmp_path}/")
                          .replace("/etc/haproxy/tls", str(tls)))
        proc = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_nodes_use_their_sites_haproxy_carriers_and_member_first(
        lab: dict[str, dict[str, str]], tmp_path: Path) -> None:
    for host, db, carriers, own in (
            ("paris-node2", "10.213.0.11", "10.213.0.14", "10.213.0.11:2379"),
            ("marseille-node1", "10.213.0.21", "10.213.0.24", "10.213.0.21:2379")):
        conf = yaml.safe_load(lab[host]["node.yml"])
        assert conf["node"] == host
        assert f"host={db} port=5000" in conf["dsn"]
        assert "sslmode=verify-full sslrootcert=/etc/tenir/tls/ca.crt" in conf["dsn"]
        assert SECRETS["tenir_node_db_password"] in conf["dsn"]
        assert conf["carriers"]["host"] == carriers
        assert conf["coordination"]["endpoints"][0] == own
        assert conf["coordination"]["endpoints"][2] == "10.213.0.31:2379"
        assert conf["patroni_urls"] == ["https://10.213.0.11:8008", "https://10.213.0.21:8008"]
        assert conf["lease_s"] == 45  # the inventory's, over the role's default
        # its evidence keys where the role puts them, and the witness
        ev = conf["evidence"]
        assert ev["origin"] == "tenir.invalid/tenir-lab/ledger"
        assert ev["site_key"] == f"/etc/tenir/evidence/{host.split('-')[0]}.key"
        assert ev["witness_url"] == "https://10.213.0.31:8095"
        assert ev["witness_key"] == "/etc/tenir/evidence/witness.pub"
        assert sorted(ev["keys"]) == sorted(f"/etc/tenir/evidence/{s}.pub"
                                            for s in ("paris", "marseille", "witness"))
        # the node itself accepts it (the role's validate: runs this on the machine), with
        # keys made as the evidence_keys play makes them
        keys = tmp_path / "keys"
        if not keys.exists():
            for site in ("paris", "marseille", "witness"):
                subprocess.run([".venv/bin/tenir", "evidence", "keygen", "--site", site, "--out",
                                str(keys), *(["--witness"] if site == "witness" else [])],
                               cwd=REPO, check=True, capture_output=True, timeout=60)
        path = tmp_path / f"{host}.yml"
        path.write_text(lab[host]["node.yml"].replace("/etc/tenir/evidence", str(keys))
                        .replace("/etc/tenir/tls", str(tls_dir(tmp_path / "tls"))))
        proc = subprocess.run([".venv/bin/python", "-m", "nodes.main", "--check", "--config",
                               str(path)], capture_output=True, text=True, cwd=REPO, timeout=60)
        assert proc.returncode == 0, proc.stderr


def test_secrets_only_where_they_are_used(lab: dict[str, dict[str, str]]) -> None:
    expected = {
        "patroni.yml": {"patroni_superuser_password", "patroni_replication_password",
                        "patroni_rewind_password", "patroni_restapi_password",
                        "patroni_etcd_password"},
        "haproxy.cfg": {"haproxy_stats_password"},
        "node.yml": {"tenir_node_db_password", "tenir_node_smpp_password",
                     "tenir_node_ack_key", "tenir_node_voice_callback_secret"},
    }
    for files in lab.values():
        for name, text in files.items():
            leaked = {var for var, secret in SECRETS.items() if secret in text}
            assert leaked == expected.get(name, set()), name


def test_nodes_hold_the_users_token_digests_never_a_token(
        lab: dict[str, dict[str, str]]) -> None:
    for host in ("paris-node1", "marseille-node2"):
        conf = yaml.safe_load(lab[host]["node.yml"])
        assert conf["users"] == USERS
        assert [k["id"] for k in conf["ack_keys"]] == ["k1"]
        text = lab[host]["node.yml"]
        for token in (SECRETS["tenir_deploy_token"], *TOKENS.values()):
            assert token not in text


def test_the_witness_follows_the_ledger_with_the_datacenters_keys(
        lab: dict[str, dict[str, str]]) -> None:
    conf = yaml.safe_load(lab["witness-quorum"]["witness.yml"])
    assert (conf["listen_host"], conf["listen_port"]) == ("10.213.0.31", 8095)
    assert conf["key"] == "/etc/tenir-witness/witness.key"
    assert conf["logs"] == [{"origin": "tenir.invalid/tenir-lab/ledger",
                             "keys": ["/etc/tenir-witness/marseille.pub",
                                      "/etc/tenir-witness/paris.pub"]}]


def test_zookeeper_members_and_myids_follow_the_group(lab_zk: dict[str, dict[str, str]]) -> None:
    for myid, host in enumerate(("paris-db", "marseille-db", "witness-quorum"), start=1):
        assert lab_zk[host]["myid"].strip() == str(myid)
        conf = _zoo_cfg(lab_zk[host]["zoo.cfg"])
        assert conf["server.1"].startswith("10.213.0.11:")
        assert conf["server.3"].startswith("10.213.0.31:")
        assert conf["4lw.commands.whitelist"] == "srvr,mntr,ruok,envi"
    patroni = yaml.safe_load(lab_zk["paris-db"]["patroni.yml"])
    assert patroni["zookeeper"]["hosts"] == ["10.213.0.11:2181", "10.213.0.21:2181",
                                             "10.213.0.31:2181"]
    assert "etcd3" not in patroni
    node = yaml.safe_load(lab_zk["marseille-node2"]["node.yml"])
    assert node["coordination"]["backend"] == "zookeeper"
    assert node["coordination"]["endpoints"] == ["10.213.0.21:2181", "10.213.0.11:2181",
                                                 "10.213.0.31:2181"]


@pytest.mark.parametrize("backend", ["etcd", "zookeeper"])
def test_production_example_renders_with_its_vault(backend: str, tmp_path: Path) -> None:
    files = render_inventory(PRODUCTION, tmp_path, {"tenir_coordination": backend},
                             vault_password_file=VAULT_PASSWORD)
    patroni = yaml.safe_load(files["paris-pg1"]["patroni.yml"])
    assert "hostssl all all 192.0.2.0/24 scram-sha-256" in patroni["postgresql"]["pg_hba"]
    assert patroni["tags"]["site"] == "paris"
    assert len(patroni["postgresql"]["authentication"]["superuser"]["password"]) >= 20
    node = yaml.safe_load(files["marseille-alert1"]["node.yml"])
    port = 2181 if backend == "zookeeper" else 2379
    assert node["coordination"]["endpoints"][0] == f"192.0.2.112:{port}"  # its own site first
    assert node["coordination"]["ttl"] == 6
    assert node["patroni_urls"] == ["https://192.0.2.11:8008", "https://192.0.2.111:8008"]
    assert node["carriers"]["tls"] is True and node["carriers"]["ca"] == "system"
    assert "host=192.0.2.112 port=5000" in node["dsn"]


def test_strictness_grace_journal_and_the_test_environment_by_default(
        lab: dict[str, dict[str, str]]) -> None:
    dcs = yaml.safe_load(lab["paris-db"]["patroni.yml"])["bootstrap"]["dcs"]
    assert dcs["synchronous_mode_strict"] is False  # the default: alerting goes on alone
    node = yaml.safe_load(lab["paris-node1"]["node.yml"])
    assert node["coordination"]["store_grace_s"] == 3
    assert "TENIR_UNSAFE_TEST_SWITCHES" not in lab["paris-node1"]["tenir-node.service"]
    # the outcome journal: where the node writes it, and the unit lets it write there
    assert node["journal_dir"] == "/var/lib/tenir/journal"
    assert "\nReadWritePaths=/var/lib/tenir/journal\n" in lab["paris-node1"]["tenir-node.service"]
    # an alert node is restarted however often it failed (systemd's start limit once kept a
    # node down for good after its site powered on)
    unit = lab["paris-node1"]["tenir-node.service"]
    assert "\nStartLimitIntervalSec=0\n" in unit.split("[Service]")[0]
    assert "\nRestart=on-failure\n" in unit
    carriers = lab["paris-carriers"]["tenir-carriers.service"]
    assert "--journal /var/lib/tenir-carriers/submissions.jsonl" in carriers
    assert "\nStateDirectory=tenir-carriers\n" in carriers


def test_strict_mode_and_the_test_switches_environment_when_asked(tmp_path: Path) -> None:
    files = render_inventory(LAB, tmp_path, {**SECRETS, "tenir_version": "0.1.0",
                                             "patroni_synchronous_mode_strict": True,
                                             "tenir_node_unsafe_test_environment": True,
                                             "tenir_node_unsafe_test_switches": ["watchdog_off"],
                                             "carrier_sim_journal": ""})
    for host in ("paris-db", "marseille-db"):
        dcs = yaml.safe_load(files[host]["patroni.yml"])["bootstrap"]["dcs"]
        assert dcs["synchronous_mode_strict"] is True
    unit = files["marseille-node2"]["tenir-node.service"]
    assert "\nEnvironment=TENIR_UNSAFE_TEST_SWITCHES=1\n" in unit
    assert yaml.safe_load(files["marseille-node2"]["node.yml"])["unsafe_test_switches"] == [
        "watchdog_off"]
    assert "--journal" not in files["paris-carriers"]["tenir-carriers.service"]


def test_the_role_creates_the_journal_directory_for_the_node_alone() -> None:
    tasks = yaml.safe_load((REPO / "ansible/roles/tenir_node/tasks/main.yml").read_text())
    made = [t["ansible.builtin.file"] for t in tasks if "ansible.builtin.file" in t
            and t["ansible.builtin.file"].get("path") == "{{ tenir_node_journal_dir }}"]
    assert made == [{"path": "{{ tenir_node_journal_dir }}", "state": "directory",
                     "owner": "{{ tenir_node_user }}", "group": "{{ tenir_node_user }}",
                     "mode": "0700"}]
    names = [t.get("name", "") for t in tasks]
    # before the configuration's check and the unit, which need it
    assert names.index(next(n for n in names if "journal" in n)) < names.index(
        next(n for n in names if n.startswith("Install the unit")))
