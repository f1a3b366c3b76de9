"""etcd health and leadership through etcd's v3 JSON gateway (no client library needed)."""

from __future__ import annotations

from dataclasses import dataclass

from cluster.httpjson import HttpError, request_json


@dataclass(frozen=True)
class EtcdMemberHealth:
    name: str
    address: str
    healthy: bool
    leader: bool
    member_id: str | None
    error: str | None = None


def probe_members(members: list[tuple[str, str]], port: int = 2379,
                  timeout: float = 1.5) -> list[EtcdMemberHealth]:
    """Ask each member (name, address) for its health and its view of the leader.

    A member is healthy when ``/health`` says so (it then has a leader and can serve). It is the
    leader when the leader id it reports is its own id.
    """
    out: list[EtcdMemberHealth] = []
    for name, address in members:
        base = f"http://{address}:{port}"
        try:
            _, health = request_json("GET", f"{base}/health", timeout=timeout,
                                     accept_status=(200, 503))
            healthy = isinstance(health, dict) and str(health.get("health")) == "true"
            _, status = request_json("POST", f"{base}/v3/maintenance/status", {}, timeout=timeout)
            member_id = str(status["header"]["member_id"])
            leader_id = str(status.get("leader", ""))
            out.append(EtcdMemberHealth(name, address, healthy, healthy and leader_id == member_id,
                                        member_id))
        except (HttpError, KeyError, TypeError) as exc:
            out.append(EtcdMemberHealth(name, address, False, False, None, str(exc)))
    return out


def has_quorum(health: list[EtcdMemberHealth]) -> bool:
    return sum(1 for h in health if h.healthy) > len(health) // 2
