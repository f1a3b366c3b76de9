"""PostgreSQL as the patroni role configures it, on a throwaway server: ``ssl=on`` with a host
certificate and ``hostssl`` rules only, so a client in clear is refused; clients verify the
server with ``sslmode=verify-full`` against the cluster's CA, which also checks the name they
dialled. Through HAProxy (TCP) a node dials the HAProxy's address, so the PostgreSQL
certificate must carry it (the pki play adds every HAProxy's address to the members'
certificates): without it, verify-full refuses. A capture of the loopback traffic sees
only TLS after PostgreSQL's SSLRequest, and sees the clear-text attempt for what it is."""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.capture import capture, clear_text, streams
from tests.integration.pgserver import PG_USER, PgServer, start_pg
from tests.tls_kit import TestPki

pytestmark = pytest.mark.integration

HAPROXY_ADDRESS = "10.213.0.21"  # what a node of the other site dials (its own HAProxy)


def pg_files(pki: TestPki, name: str, sans: tuple[str, ...], into: Path) -> Path:
    """The member's certificate and key where the postgres user reads them (key mode 600)."""
    files = pki.files(name, sans)
    os.chmod(into.parent, 0o755)  # postgres goes through it to its own directory
    into.mkdir(mode=0o700)
    for src, dest in ((files.cert, "host.crt"), (files.key, "host.key"), (files.ca, "ca.crt")):
        assert src is not None
        shutil.copyfile(src, into / dest)
        os.chmod(into / dest, 0o600)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_USER)
        for p in (into, *into.iterdir()):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    (into / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 trust\n"
                                      "hostnossl all all all reject\n")
    return into


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module", params=["member only", "member and HAProxies"])
def server(request: pytest.FixtureRequest, pki: TestPki) -> Iterator[tuple[str, PgServer]]:
    sans = ("127.0.0.1",) if request.param == "member only" else ("127.0.0.1", HAPROXY_ADDRESS)
    import tempfile

    tls = pg_files(pki, f"pg-{len(sans)}", sans, Path(tempfile.mkdtemp()) / "tls")
    pg = start_pg(settings={"ssl": "on", "ssl_cert_file": str(tls / "host.crt"),
                            "ssl_key_file": str(tls / "host.key"),
                            "ssl_ca_file": str(tls / "ca.crt"),
                            "ssl_min_protocol_version": "TLSv1.2",
                            "hba_file": str(tls / "pg_hba.conf")})
    try:
        yield str(request.param), pg
    finally:
        pg.stop()
        shutil.rmtree(tls.parent, ignore_errors=True)


def connect(pg: PgServer, **options: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host=options.pop("host", "127.0.0.1"), hostaddr="127.0.0.1",
                           port=pg.port, user=PG_USER, dbname="postgres", connect_timeout=5,
                           **options)


def test_verify_full_connects_over_tls_and_clear_text_is_refused(
        server: tuple[str, PgServer], pki: TestPki) -> None:
    _, pg = server
    with connect(pg, sslmode="verify-full", sslrootcert=str(pki.pki.ca_cert_path)) as conn:
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl "
                           "WHERE pid = pg_backend_pid()").fetchone()
        assert row is not None and row[0] is True and str(row[1]).startswith("TLSv1.")
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        connect(pg, sslmode="disable")


def test_a_server_of_another_ca_is_refused(server: tuple[str, PgServer],
                                           tmp_path: Path) -> None:
    _, pg = server
    other = TestPki(tmp_path / "other")
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        connect(pg, sslmode="verify-full", sslrootcert=str(other.pki.ca_cert_path))


def test_through_haproxy_verify_full_needs_the_haproxy_address_in_the_certificate(
        server: tuple[str, PgServer], pki: TestPki) -> None:
    which, pg = server
    ca = str(pki.pki.ca_cert_path)
    if which == "member only":
        with pytest.raises(psycopg.OperationalError, match="does not match host name"):
            connect(pg, host=HAPROXY_ADDRESS, sslmode="verify-full", sslrootcert=ca)
    else:
        with connect(pg, host=HAPROXY_ADDRESS, sslmode="verify-full", sslrootcert=ca) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_capture_sees_tls_only_and_flags_a_clear_text_attempt(
        server: tuple[str, PgServer], pki: TestPki, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("capturing loopback traffic needs root (tcpdump)")
    _, pg = server
    ca = str(pki.pki.ca_cert_path)
    with capture("lo", tmp_path / "pg.pcap", f"tcp port {pg.port}") as pcap, \
            connect(pg, sslmode="verify-full", sslrootcert=ca) as conn:
        conn.execute("SELECT 'a secret row'").fetchone()
    assert [s.verdict for s in streams(pcap)] == ["tls"]
    assert b"secret row" not in pcap.read_bytes()
    with capture("lo", tmp_path / "clear.pcap", f"tcp port {pg.port}") as pcap, \
            pytest.raises(psycopg.OperationalError):
        connect(pg, sslmode="disable")
    [clear] = clear_text(pcap)
    assert "user" in clear  # the startup message went out in clear (and was refused)
