"""etcd as the etcd role runs it, on a throwaway server: TLS with client certificates required,
users and roles made by the role's own script (``ansible/roles/etcd/files/rbac.py``), then the
alert nodes' client (aetcd over TLS, its certificate naming its user) and Patroni's password
user at work."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import etcd_probe
from cluster.coordination.base import (
    CoordinationError,
    CoordinationSettings,
    CoordinationUnavailable,
)
from cluster.coordination.factory import open_coordinator
from cluster.httpjson import HttpError, request_json
from cluster.tls import TlsFiles
from tests.coordination.servers import ETCD_BIN, HOST, EtcdServer, running
from tests.tls_kit import TestPki

pytestmark = pytest.mark.integration

RBAC = Path(__file__).resolve().parents[2] / "ansible/roles/etcd/files/rbac.py"
ETCDCTL = ETCD_BIN.with_name("etcdctl")
ROOT_PW, PATRONI_PW = "root-pw-0123456789", "patroni-pw-0123456789"
SPEC = {"roles": {"tenir-nodes": ["/tenir/c1/"], "patroni": ["/service/c1/"]},
        "cert_users": {"tenir-nodes": ["paris-node1", "tenir-operator"]},
        "password_users": {"patroni": ["patroni"]}}


@pytest.fixture(scope="module")
def server(pki: TestPki) -> Iterator[EtcdServer]:
    with running(EtcdServer(tls=pki.files("etcd-member"))) as s:
        yield s


def etcdctl_env(server: EtcdServer, files: TlsFiles) -> dict[str, str]:
    return {**os.environ, "ETCDCTL_API": "3", "ETCDCTL_ENDPOINTS": f"https://{server.endpoint}",
            "ETCDCTL_CACERT": str(files.ca), "ETCDCTL_CERT": str(files.cert),
            "ETCDCTL_KEY": str(files.key), "TENIR_ETCDCTL": str(ETCDCTL)}


def run_rbac(server: EtcdServer, pki: TestPki, tmp: Path, patroni_pw: str = PATRONI_PW) -> str:
    spec = tmp / "rbac.json"
    spec.write_text(json.dumps(SPEC))
    env = {**etcdctl_env(server, pki.files("etcd-member")),
           "TENIR_ETCD_ROOT_PASSWORD": ROOT_PW, "TENIR_ETCD_PASSWORD_PATRONI": patroni_pw}
    proc = subprocess.run([sys.executable, str(RBAC), str(spec)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def rbac_runs(server: EtcdServer, pki: TestPki,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    tmp = tmp_path_factory.mktemp("rbac")
    return run_rbac(server, pki, tmp), run_rbac(server, pki, tmp)


def settings(server: EtcdServer, files: TlsFiles | None, namespace: str = "/tenir/c1/"
             ) -> CoordinationSettings:
    return CoordinationSettings(endpoints=(server.endpoint,), namespace=namespace, ttl=3.0,
                                retry_timeout=1.0, tls=files)


def test_the_role_script_makes_users_and_roles_once_then_changes_nothing(
        rbac_runs: tuple[str, str]) -> None:
    first, second = rbac_runs
    assert "authentication enabled" in first.splitlines()
    assert "user paris-node1 granted role tenir-nodes" in first.splitlines()
    assert "role patroni may read and write /service/c1/*" in first.splitlines()
    assert second.strip() == "unchanged"


@pytest.mark.asyncio
async def test_a_node_certificate_writes_its_prefix_but_not_patronis(
        server: EtcdServer, pki: TestPki, rbac_runs: tuple[str, str]) -> None:
    node = pki.files("paris-node1")
    coordinator = await open_coordinator("etcd", settings(server, node))
    try:
        assert await coordinator.compare_and_set("drain/paris", b"1", None)
        assert (await coordinator.get("drain/paris")) is not None
    finally:
        await coordinator.close()
    # Patroni's keys: not even read (opening reads the namespace), let alone written
    with pytest.raises(CoordinationError, match="permission denied"):
        await open_coordinator("etcd", settings(server, node, "/service/c1/"))


@pytest.mark.asyncio
async def test_a_certificate_that_names_no_user_may_do_nothing(
        server: EtcdServer, pki: TestPki, rbac_runs: tuple[str, str]) -> None:
    with pytest.raises(CoordinationError, match="permission denied"):
        await open_coordinator("etcd", settings(server, pki.files("stranger")))


@pytest.mark.asyncio
async def test_a_client_without_a_certificate_is_refused(
        server: EtcdServer, pki: TestPki, rbac_runs: tuple[str, str]) -> None:
    with pytest.raises(CoordinationUnavailable):
        await open_coordinator("etcd", settings(server, pki.ca_only()))


def test_patroni_logs_in_with_its_password_and_writes_only_its_keys(
        server: EtcdServer, pki: TestPki, rbac_runs: tuple[str, str]) -> None:
    env = etcdctl_env(server, pki.files("paris-db"))

    def put(key: str, password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(ETCDCTL), "--user", f"patroni:{password}", "put", key, "x"],
                              env=env, capture_output=True, text=True, timeout=30)

    assert put("/service/c1/leader", PATRONI_PW).returncode == 0
    denied = put("/tenir/c1/drain/paris", PATRONI_PW)
    assert denied.returncode != 0 and "permission denied" in denied.stderr
    wrong = put("/service/c1/leader", "not-the-password")
    assert wrong.returncode != 0 and "authentication failed" in wrong.stderr


def gateway_put(server: EtcdServer, files: TlsFiles, key: str) -> object:
    """What Patroni does through etcd's JSON gateway: log in with its password, then put."""
    base, ctx = f"https://{server.endpoint}", files.client_context()
    _, auth = request_json("POST", f"{base}/v3/auth/authenticate",
                           {"name": "patroni", "password": PATRONI_PW}, tls=ctx, timeout=5)
    assert isinstance(auth, dict)
    token = str(auth["token"])
    _, put = request_json("POST", f"{base}/v3/kv/put",
                          {"key": base64.b64encode(key.encode()).decode(), "value": "eA=="},
                          tls=ctx, timeout=5, headers={"Authorization": token})
    return put


def test_the_json_gateway_refuses_a_certificate_with_a_common_name_and_takes_one_without(
        server: EtcdServer, pki: TestPki, rbac_runs: tuple[str, str]) -> None:
    """Patroni and ``tenir status`` reach etcd through its JSON gateway: with RBAC on, etcd
    answers HTTP 400 to a client certificate that carries a common name (the lab's first TLS
    bring-up hung on it), so the pki play makes them one without."""
    with pytest.raises(HttpError, match="CommonName"):
        gateway_put(server, pki.files("paris-db"), "/service/c1/leader")
    gateway = pki.files("paris-db-gateway", common_name=False)
    assert isinstance(gateway_put(server, gateway, "/service/c1/leader"), dict)
    with pytest.raises(HttpError, match="permission denied"):
        gateway_put(server, gateway, "/tenir/c1/drain/paris")
    # the CLI's probe through the gateway: healthy and the leader (a single member)
    [health] = etcd_probe.probe_members([("e", HOST)], server.port,
                                        tls=pki.files("op-gateway", common_name=False
                                                      ).client_context())
    assert health.healthy and health.leader, health.error


def test_a_changed_password_in_the_inventory_is_set_and_the_old_one_refused(
        rbac_runs: tuple[str, str], server: EtcdServer, pki: TestPki, tmp_path: Path) -> None:
    """The vault's patroni_etcd_password rotated: the next run sets it; the old one no longer
    logs in. Put back after, for the module's other tests."""
    env = etcdctl_env(server, pki.files("etcd-member"))

    def logs_in(password: str) -> bool:
        return subprocess.run([str(ETCDCTL), "get", "/service/c1/x"],
                              env={**env, "ETCDCTL_USER": f"patroni:{password}"},
                              capture_output=True, text=True, timeout=30).returncode == 0

    rotated = "patroni-pw-rotated-9876543210"
    try:
        out = run_rbac(server, pki, tmp_path, patroni_pw=rotated)
        assert "user patroni: password changed" in out.splitlines(), out
        assert logs_in(rotated) and not logs_in(PATRONI_PW)
        assert "password changed" not in run_rbac(server, pki, tmp_path, patroni_pw=rotated)
    finally:
        run_rbac(server, pki, tmp_path)
    assert logs_in(PATRONI_PW)
