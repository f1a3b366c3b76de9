"""A throwaway cluster CA for tests on loopback: certificates made by the same code the pki play
runs (``cluster/pki.py``), for 127.0.0.1 and ``localhost``."""

from __future__ import annotations

from pathlib import Path

from cluster.pki import Pki
from cluster.tls import TlsFiles

LOOPBACK = ("127.0.0.1", "localhost")


class TestPki:
    __test__ = False  # not a test class

    def __init__(self, directory: Path) -> None:
        self.pki = Pki(directory)
        self.pki.ensure_ca("tenir-test CA")

    def files(self, name: str, sans: tuple[str, ...] = LOOPBACK,
              common_name: bool = True) -> TlsFiles:
        """``name``'s certificate (made on first use) with the CA."""
        self.pki.ensure_cert(name, list(sans), common_name=common_name)
        return TlsFiles(self.pki.ca_cert_path, self.pki.cert_path(name), self.pki.key_path(name))

    def ca_only(self) -> TlsFiles:
        return TlsFiles(self.pki.ca_cert_path)
