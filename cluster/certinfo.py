"""When a certificate expires: read from its PEM file, for ``tenir status``, ``tenir pki show``
and the node's ``tenir_certificate_expiry_seconds`` gauge."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cryptography import x509


def not_after(path: Path) -> dt.datetime:
    """The certificate's expiry (the first certificate of the file); OSError/ValueError if it
    cannot be read."""
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc


def describe(path: Path, now: dt.datetime | None = None) -> dict[str, Any]:
    """``{name, path, subject, not_after, days_left, sans}`` or ``{name, path, error}``."""
    from cluster.pki import cert_sans

    now = now or dt.datetime.now(dt.UTC)
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        return {"name": path.stem, "path": str(path), "error": str(exc)}
    end = cert.not_valid_after_utc
    return {"name": path.stem, "path": str(path), "subject": cert.subject.rfc4514_string(),
            "not_after": end.isoformat(), "days_left": int((end - now).total_seconds() // 86400),
            "sans": cert_sans(cert)}


def describe_dir(directory: Path) -> list[dict[str, Any]]:
    return [describe(p) for p in sorted(directory.glob("*.crt"))]
