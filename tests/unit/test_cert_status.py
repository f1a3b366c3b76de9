"""``tenir status``'s certificates: what a TLS listener presents, read by a handshake verified by
the cluster's CA; one close to expiry, or signed by another CA, is a problem."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cluster.cert_status import certificate_lines, certificate_problems, presented
from cluster.tls import TlsFiles
from tests.tls_kit import TestPki

pytestmark = pytest.mark.unit


@contextmanager
def tls_listener(files: TlsFiles) -> Iterator[int]:
    """A loopback listener that completes TLS handshakes with ``files`` (one thread)."""
    context = files.server_context()
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_a_certificate_close_to_expiry_is_a_problem(tmp_path: Path) -> None:
    pki = TestPki(tmp_path / "pki")
    pki.pki.ensure_cert("soon", ["127.0.0.1"], days=10)
    soon = TlsFiles(pki.pki.ca_cert_path, pki.pki.cert_path("soon"), pki.pki.key_path("soon"))
    now = dt.datetime.now(dt.UTC)
    with tls_listener(soon) as port:
        seen = presented("127.0.0.1", port, pki.ca_only().client_context(), now)
    assert seen["days_left"] in (9, 10)
    entry = {"host": "paris-db", "service": "patroni", **seen}
    assert certificate_problems([entry]) == [
        f"certificate of patroni on paris-db expires in {seen['days_left']} days: run site.yml "
        "(it renews it) and check the service reloaded it"]
    assert certificate_lines([entry])[1].startswith("  patroni on paris-db: expires ")
    with tls_listener(pki.files("fresh", ("127.0.0.1",))) as port:
        fresh = presented("127.0.0.1", port, pki.ca_only().client_context(), now)
    assert fresh["days_left"] >= 364
    assert certificate_problems([{"host": "h", "service": "etcd", **fresh}]) == []


def test_a_certificate_of_another_ca_is_a_problem(tmp_path: Path) -> None:
    ours, theirs = TestPki(tmp_path / "ours"), TestPki(tmp_path / "theirs")
    with tls_listener(theirs.files("intruder", ("127.0.0.1",))) as port:
        seen = presented("127.0.0.1", port, ours.ca_only().client_context(),
                         dt.datetime.now(dt.UTC))
    [problem] = certificate_problems([{"host": "paris-node1", "service": "node api", **seen}])
    assert problem.startswith("certificate of node api on paris-node1 is not signed by the "
                              "cluster's CA")
