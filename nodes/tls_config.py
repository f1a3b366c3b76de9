"""The ``tls`` section of a node's configuration and the TLS of its carriers, validated at load:
the files are read here (a missing file or a key that does not match its certificate stops the
node at start, naming the key), and the contexts the node serves and connects with are made
from them.

    tls:
      ca: /etc/tenir/tls/ca.crt      # the cluster's CA: Patroni, the witness, etcd, ZooKeeper
      cert: /etc/tenir/tls/host.crt  # this node: its HTTPS API, its etcd/ZooKeeper identity
      key: /etc/tenir/tls/host.key
    carriers:
      tls: true                      # SMPP over TLS, SMTP STARTTLS required, voice over HTTPS
      ca: /etc/tenir/tls/ca.crt      # who signs the carriers' certificates ("system": the
                                     # machine's trusted CAs, for public carriers)
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.certinfo import not_after
from cluster.tls import TlsConfigError, TlsFiles

SYSTEM = "system"


@dataclass(frozen=True)
class CarrierTls:
    enabled: bool = False
    ca: str | None = None  # a CA file, "system", or None: the node's own CA

    def context(self, node_tls: TlsFiles | None) -> ssl.SSLContext | None:
        if not self.enabled:
            return None
        if self.ca == SYSTEM:
            return ssl.create_default_context()
        if self.ca is not None:
            return TlsFiles(Path(self.ca)).client_context()
        if node_tls is None:
            raise TlsConfigError("carriers.tls needs carriers.ca or the node's tls.ca")
        return TlsFiles(node_tls.ca).client_context()


def parse_tls(raw: Any, error: Any) -> TlsFiles | None:
    """``error(key, problem)`` builds the caller's exception (it names the file)."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"ca", "cert", "key"}:
        raise error("tls", "must be a mapping {ca, cert, key}")
    for name in ("ca", "cert", "key"):
        if not isinstance(raw[name], str) or not raw[name]:
            raise error(f"tls.{name}", "must be a file path")
    files = TlsFiles(Path(raw["ca"]), Path(raw["cert"]), Path(raw["key"]))
    for name, path in (("ca", files.ca), ("cert", files.cert)):
        try:
            assert path is not None
            not_after(path)
        except (OSError, ValueError) as exc:
            raise error(f"tls.{name}", f"not a readable PEM certificate ({type(exc).__name__})"
                        ) from None
    try:
        files.server_context()
    except TlsConfigError:
        raise error("tls.key", "cannot be read, or does not match tls.cert") from None
    return files


def parse_carrier_tls(raw: Any, error: Any) -> CarrierTls:
    tls, ca = (raw or {}).get("tls", False), (raw or {}).get("ca")
    if not isinstance(tls, bool):
        raise error("carriers.tls", "must be a boolean")
    if ca is not None and (not isinstance(ca, str) or not ca):
        raise error("carriers.ca", f'must be a CA file or "{SYSTEM}"')
    if ca not in (None, SYSTEM):
        try:
            not_after(Path(ca))
        except (OSError, ValueError):
            raise error("carriers.ca", "not a readable PEM certificate") from None
    return CarrierTls(tls, ca)


def certificate_expiries(tls: TlsFiles | None, carriers: CarrierTls) -> dict[str, float]:
    """``{certificate: expiry as a Unix time}`` of every certificate the node uses (its own,
    the cluster's CA, the carriers' CA when it is a file of its own)."""
    paths: dict[str, Path] = {}
    if tls is not None:
        paths["ca"] = tls.ca
        if tls.cert is not None:
            paths["host"] = tls.cert
    if carriers.enabled and carriers.ca not in (None, SYSTEM):
        paths["carriers_ca"] = Path(str(carriers.ca))
    out: dict[str, float] = {}
    for name, path in paths.items():
        try:
            out[name] = not_after(path).timestamp()
        except (OSError, ValueError):
            continue
    return out
