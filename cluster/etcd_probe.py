"""etcd health and leadership through etcd's v3 JSON gateway (no client library needed)."""

from __future__ import annotations

import ssl

from cluster.httpjson import HttpError, request_json
from cluster.member_probe import MemberHealth


def probe_members(members: list[tuple[str, str]], port: int = 2379,
                  timeout: float = 1.5, tls: ssl.SSLContext | None = None) -> list[MemberHealth]:
    """Ask each member (name, address) for its health and its view of the leader.

    A member is healthy when ``/health`` says so (it then has a leader and can serve). It is the
    leader when the leader id it reports is its own id.
    """
    out: list[MemberHealth] = []
    for name, address in members:
        base = f"{'https' if tls is not None else 'http'}://{address}:{port}"
        try:
            _, health = request_json("GET", f"{base}/health", timeout=timeout,
                                     accept_status=(200, 503), tls=tls)
            healthy = isinstance(health, dict) and str(health.get("health")) == "true"
            _, status = request_json("POST", f"{base}/v3/maintenance/status", {}, timeout=timeout,
                                     tls=tls)
            member_id = str(status["header"]["member_id"])
            leader_id = str(status.get("leader", ""))
            out.append(MemberHealth(name, address, healthy, healthy and leader_id == member_id,
                                        member_id))
        except (HttpError, KeyError, TypeError) as exc:
            out.append(MemberHealth(name, address, False, False, None, str(exc)))
    return out

