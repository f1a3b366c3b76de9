"""ZooKeeper's TLS and digest ACL options for kazoo, from the coordination settings."""

from __future__ import annotations

from typing import Any

from kazoo.security import make_digest_acl  # type: ignore[import-untyped]

from .base import CoordinationSettings


def zk_security(settings: CoordinationSettings) -> dict[str, Any]:
    """kazoo's TLS and digest options: over TLS, the server verified against the CA (and our
    certificate presented); with ``zk_digest``, we log in as that user and every znode we create
    is readable and writable by that user alone (ZooKeeper's ACLs are per znode, never
    inherited)."""
    out: dict[str, Any] = {}
    tls = settings.tls
    if tls is not None:
        out.update(use_ssl=True, verify_certs=True, ca=str(tls.ca),
                   certfile=str(tls.cert) if tls.cert else None,
                   keyfile=str(tls.key) if tls.key else None)
    if settings.zk_digest:
        user, _, password = settings.zk_digest.partition(":")
        if not user or not password:
            raise ValueError("zk_digest: must be user:password")
        out.update(auth_data=[("digest", settings.zk_digest)],
                   default_acl=[make_digest_acl(user, password, all=True)])
    return out
