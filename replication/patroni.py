"""Client of Patroni's REST API: cluster view, health endpoints and dynamic configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster.httpjson import HttpError, request_json


@dataclass(frozen=True)
class PatroniMember:
    name: str
    role: str  # leader, sync_standby, replica, standby_leader
    state: str  # running, streaming, stopped, starting, ...
    host: str
    timeline: int | None
    lag_bytes: int | None  # behind the primary: WAL not yet received or not yet replayed
    site: str | None = None  # the member's ``site`` tag (the patroni role sets it)


@dataclass(frozen=True)
class PatroniCluster:
    members: tuple[PatroniMember, ...]

    @property
    def primary(self) -> str | None:
        return next((m.name for m in self.members if m.role in ("leader", "master")), None)

    @property
    def sync_standby(self) -> str | None:
        return next(
            (m.name for m in self.members if m.role == "sync_standby" and m.state == "streaming"),
            None,
        )

    @property
    def max_lag_bytes(self) -> int | None:
        lags = [m.lag_bytes for m in self.members if m.role not in ("leader", "master")]
        known = [lag for lag in lags if lag is not None]
        return max(known) if known else None


def _lag(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _behind(member: dict[str, Any]) -> int | None:
    """How many bytes the member is behind the primary: Patroni's ``lag`` (WAL received) or,
    when Patroni 4 reports it and it is further, ``replay_lag`` (WAL replayed). A standby whose
    replay is paused has received everything (``lag`` 0) yet would replay it all before it
    could be promoted."""
    known = [x for x in (_lag(member.get("lag")), _lag(member.get("replay_lag"))) if x is not None]
    return max(known) if known else None


def _site_tag(tags: Any) -> str | None:
    site = tags.get("site") if isinstance(tags, dict) else None
    return site if isinstance(site, str) and site else None


def parse_cluster(data: Any) -> PatroniCluster:
    """The answer of ``GET /cluster`` (``{"members": [{"name", "role", "state", ...}]}``);
    ValueError if it is not one."""
    raw = (data or {}).get("members", []) if isinstance(data, dict | None) else None
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        raise ValueError(f"not a Patroni /cluster answer: {str(data)[:200]!r}")
    members = tuple(
        PatroniMember(
            name=str(m.get("name")), role=str(m.get("role")), state=str(m.get("state")),
            host=str(m.get("host")), timeline=m.get("timeline"), lag_bytes=_behind(m),
            site=_site_tag(m.get("tags")),
        )
        for m in raw
    )
    return PatroniCluster(members)


class PatroniClient:
    def __init__(self, address: str, port: int = 8008, auth: tuple[str, str] | None = None,
                 timeout: float = 2.0) -> None:
        self.base = f"https://{address}:{port}"  # verified by the cluster's CA
        self.auth = auth
        self.timeout = timeout

    def cluster(self) -> PatroniCluster:
        _, data = request_json("GET", f"{self.base}/cluster", timeout=self.timeout)
        return parse_cluster(data)

    def is_primary(self) -> bool:
        try:
            status, _ = request_json("GET", f"{self.base}/primary", timeout=self.timeout,
                                     accept_status=(200, 503))
        except HttpError:
            return False
        return status == 200

    def config(self) -> dict[str, Any]:
        _, data = request_json("GET", f"{self.base}/config", timeout=self.timeout)
        return dict(data or {})

    def patch_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        _, data = request_json("PATCH", f"{self.base}/config", changes, timeout=self.timeout,
                               auth=self.auth)
        return dict(data or {})

    def switchover(self, leader: str, candidate: str) -> str:
        _, data = request_json("POST", f"{self.base}/switchover",
                               {"leader": leader, "candidate": candidate},
                               timeout=30.0, auth=self.auth)
        return str(data)
