"""HAProxy's statistics as the haproxy role renders them, on a throwaway HAProxy on loopback:
read over HTTPS with the password (what ``tenir status`` and the switchover read), verified by
the cluster's CA; refused without the password, for anything but GET, and in clear."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import tls as cli_tls
from cluster.render import render
from replication.haproxy import HAProxyError, HAProxyStats
from tests.tls_kit import TestPki

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TestPki]]:
    root = tmp_path_factory.mktemp("haproxy")
    pki = TestPki(root / "pki")
    files = pki.files("paris-db")
    assert files.cert is not None and files.key is not None
    tls = root / "tls"
    tls.mkdir()
    (tls / "host.pem").write_bytes(files.key.read_bytes() + files.cert.read_bytes())
    (tls / "ca.crt").write_bytes(files.ca.read_bytes())
    stats, pg = free_port(), free_port()
    text = render("haproxy", "haproxy.cfg.j2", {
        "haproxy_bind_address": HOST, "haproxy_stats_port": stats, "haproxy_primary_port": pg,
        "haproxy_stats_password": "pw-stats-0123", "haproxy_tls_dir": str(tls),
        "haproxy_admin_socket": str(root / "admin.sock"),
        "haproxy_backends": [{"name": "paris-db", "address": "127.0.0.9"},
                             {"name": "marseille-db", "address": "127.0.0.10"}]})
    config = root / "haproxy.cfg"
    config.write_text(text)
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((HOST, stats), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "HAProxy did not listen"
                time.sleep(0.1)
        yield f"https://{HOST}:{stats}/stats", pki
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def trusted(haproxy: tuple[str, TestPki]) -> Iterator[str]:
    url, pki = haproxy
    cli_tls.configure(pki.ca_only())
    yield url
    cli_tls.configure(None)


def test_the_servers_are_read_over_https_with_the_password(trusted: str) -> None:
    servers = HAProxyStats(trusted, ("tenir-stats", "pw-stats-0123")).servers("postgres_primary")
    assert [s.server for s in servers] == ["paris-db", "marseille-db"]
    assert {s.proxy for s in servers} == {"postgres_primary"}
    assert all(s.status.split()[0] in ("UP", "DOWN") for s in servers), servers


def test_a_wrong_password_is_refused(trusted: str) -> None:
    with pytest.raises(HAProxyError, match="401"):
        HAProxyStats(trusted, ("tenir-stats", "wrong")).servers()


def test_only_get_and_only_tls(trusted: str, haproxy: tuple[str, TestPki]) -> None:
    _, pki = haproxy
    request = urllib.request.Request(f"{trusted};csv", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5, context=pki.ca_only().client_context())
    assert refused.value.code == 405
    port = int(re.findall(r":(\d+)/", trusted)[0])
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(b"GET /stats;csv HTTP/1.0\r\n\r\n")
        assert b"pxname" not in s.recv(4096)


def test_a_server_of_another_ca_is_not_believed(haproxy: tuple[str, TestPki],
                                                tmp_path: Path) -> None:
    url, _ = haproxy
    cli_tls.configure(TestPki(tmp_path).ca_only())
    try:
        with pytest.raises(HAProxyError, match="CERTIFICATE_VERIFY_FAILED"):
            HAProxyStats(url, ("tenir-stats", "pw-stats-0123")).servers()
    finally:
        cli_tls.configure(None)
