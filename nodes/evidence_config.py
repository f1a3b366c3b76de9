"""The ``evidence`` section of a node's configuration, validated at load: the ledger's origin,
the site's signing key, the public keys bundles carry, the witness and how often to checkpoint.
Key files are read here, so a missing or malformed key stops the node at start, naming it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from failover.evidence.keys import (
    COSIGNATURE_V1,
    ED25519,
    KeyFileError,
    Signer,
    Verifier,
    load_signer,
    load_verifier,
)


@dataclass(frozen=True)
class EvidenceConfig:
    origin: str
    keys: tuple[Verifier, ...]  # carried in bundles, used to check reports
    signer: Signer | None = None  # None: this node reads the ledger, signs nothing
    witness_url: str | None = None
    witness_key: Verifier | None = None
    checkpoint_interval_s: float = 10.0


def parse_evidence(raw: Any, error: Any) -> EvidenceConfig | None:
    """``error(key, problem)`` builds the caller's exception (it names the file)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise error("evidence", "must be a mapping or null")
    origin = raw.get("origin")
    if not isinstance(origin, str) or not origin or any(c.isspace() for c in origin):
        raise error("evidence.origin", "must be a non-empty string without spaces")

    def load(key: str, path: Any, loader: Any, key_type: int) -> Any:
        if not isinstance(path, str) or not path:
            raise error(key, "must be the path of a key file")
        try:
            value = loader(path)
        except KeyFileError as exc:
            raise error(key, str(exc)) from exc
        if value.key_type != key_type:
            kind = "witness cosigner" if key_type == COSIGNATURE_V1 else "site"
            raise error(key, f"must be a {kind} key")
        return value

    keys = raw.get("keys") or []
    if not isinstance(keys, list):
        raise error("evidence.keys", "must be a list of public key files")
    verifiers = []
    for i, path in enumerate(keys):
        if not isinstance(path, str):
            raise error(f"evidence.keys[{i}]", "must be a path")
        try:
            verifiers.append(load_verifier(path))
        except KeyFileError as exc:
            raise error(f"evidence.keys[{i}]", str(exc)) from exc
    interval = raw.get("checkpoint_interval_s", 10.0)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 1:
        raise error("evidence.checkpoint_interval_s", "must be a number of seconds >= 1")
    if raw.get("site_key") is None:
        return EvidenceConfig(origin, tuple(verifiers), checkpoint_interval_s=float(interval))
    signer = load("evidence.site_key", raw["site_key"], load_signer, ED25519)
    url = raw.get("witness_url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if not isinstance(url, str) or parts is None or parts.scheme not in ("http", "https") \
            or not parts.hostname:
        raise error("evidence.witness_url", "must be http(s)://host:port of the witness "
                    "(a site key is given: checkpoints need a witness)")
    witness = load("evidence.witness_key", raw.get("witness_key"), load_verifier,
                   COSIGNATURE_V1)
    all_keys = {v.vkey: v for v in (*verifiers, signer.verifier, witness)}
    return EvidenceConfig(origin, tuple(all_keys.values()), signer, url.rstrip("/"), witness,
                          float(interval))
