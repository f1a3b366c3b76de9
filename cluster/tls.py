"""TLS on the operator's side: which CA the CLI trusts and which certificate it presents.

Every service of the cluster speaks TLS with certificates of the cluster's CA (``cluster/pki.py``,
made by ``ansible/pki.yml``). The CLI verifies every server against that CA (host names and
addresses: verify-full) and presents the operator's certificate (``CN=tenir-operator``) where
the server asks for one (etcd, ZooKeeper). Where the files are, first found wins:

1. ``$TENIR_CA_FILE`` (and ``$TENIR_CLIENT_CERT`` / ``$TENIR_CLIENT_KEY``);
2. ``$TENIR_PKI_DIR``, else the inventory's ``tenir_pki_dir``: ``ca.crt``, ``tenir-operator.crt``
   and ``tenir-operator.key`` in it;
3. the lab's directory (``/var/lib/tenir/lab/pki``, ``$TENIR_LAB_DIR/pki``).

Without a CA the CLI refuses https URLs (it never falls back to an unverified connection).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPERATOR = "tenir-operator"
# The operator's second certificate, with no common name: etcd's JSON gateway refuses (HTTP 400)
# a client certificate carrying one once RBAC is on.
OPERATOR_GATEWAY = "tenir-operator-gateway"


class TlsConfigError(RuntimeError):
    pass


@dataclass(frozen=True)
class TlsFiles:
    """A CA to verify servers with, and optionally a certificate and key to present."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def in_dir(cls, directory: Path, name: str = OPERATOR) -> TlsFiles:
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        return cls(directory / "ca.crt", cert if cert.exists() else None,
                   key if key.exists() else None)

    def client_context(self) -> ssl.SSLContext:
        """A client context: the CA verifies the server's certificate and its name or address
        (``check_hostname``); our certificate is presented when we have one."""
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca))
            if self.cert is not None:
                ctx.load_cert_chain(str(self.cert), str(self.key or self.cert))
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"TLS files {self.ca}, {self.cert}: {exc}") from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def server_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        """A server context presenting ``cert``; with ``require_client_cert``, clients must
        present a certificate of the CA."""
        if self.cert is None:
            raise TlsConfigError(f"{self.ca}: a server needs a certificate and its key")
        try:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca))
            ctx.load_cert_chain(str(self.cert), str(self.key or self.cert))
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"TLS files {self.cert}: {exc}") from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
        return ctx


_configured: TlsFiles | None = None


def configure(files: TlsFiles | None) -> None:
    """Set the files the CLI uses for this process (from the inventory at start-up)."""
    global _configured
    _configured = files


def _expand(value: str, inventory_dir: Path | None) -> Path:
    if inventory_dir is not None:
        value = value.replace("{{ inventory_dir }}", str(inventory_dir))
    return Path(value).expanduser()


def resolve(inventory_vars: Mapping[str, Any] | None = None,
            inventory_dir: Path | None = None) -> TlsFiles | None:
    """The files the CLI should use, by the order in the module's docstring; None if none."""
    ca = os.environ.get("TENIR_CA_FILE")
    if ca:
        cert, key = os.environ.get("TENIR_CLIENT_CERT"), os.environ.get("TENIR_CLIENT_KEY")
        return TlsFiles(Path(ca), Path(cert) if cert else None, Path(key) if key else None)
    directory = os.environ.get("TENIR_PKI_DIR") or (inventory_vars or {}).get("tenir_pki_dir")
    if directory:
        return TlsFiles.in_dir(_expand(str(directory), inventory_dir))
    from cluster.lab.layout import Layout, lab_dir

    lab = Layout(lab_dir()).pki_dir
    return TlsFiles.in_dir(lab) if (lab / "ca.crt").exists() else None


def current() -> TlsFiles | None:
    return _configured if _configured is not None else resolve()


def client_context() -> ssl.SSLContext:
    """The CLI's client context; a clear error when no CA is known."""
    files = current()
    if files is None:
        raise TlsConfigError("no CA to verify the cluster's TLS with: set TENIR_CA_FILE or "
                             "TENIR_PKI_DIR, or tenir_pki_dir in the inventory")
    return files.client_context()


def gateway_client_context() -> ssl.SSLContext:
    """The client context for etcd's JSON gateway: the operator's certificate without a common
    name (``tenir-operator-gateway``) when the PKI has one, else the usual one."""
    files = current()
    if files is None:
        return client_context()
    directory = files.ca.parent
    if (directory / f"{OPERATOR_GATEWAY}.crt").exists():
        return TlsFiles.in_dir(directory, OPERATOR_GATEWAY).client_context()
    return files.client_context()


def http_ssl() -> ssl.SSLContext | bool:
    """What aiohttp's ``ssl=`` takes for the CLI's own HTTPS calls: the client context when a
    CA is known, else True (the system's trust store, never no verification)."""
    try:
        return client_context()
    except TlsConfigError:
        return True
