"""The health of the coordination service's members as tenir status and the lab see it, whatever
the backend: each member answers (healthy: it serves clients, hence is part of a quorum) or not,
and one is the leader. The probes speak each server's own plain protocol, no client library."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemberHealth:
    name: str
    address: str
    healthy: bool
    leader: bool
    member_id: str | None
    error: str | None = None


def has_quorum(health: list[MemberHealth]) -> bool:
    return sum(1 for h in health if h.healthy) > len(health) // 2
