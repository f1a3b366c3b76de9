"""Patroni's ``GET /cluster`` read by tenir: a member's lag is how far it is behind the primary,
received or replayed. A standby with its replay paused reports ``lag`` 0 and a growing
``replay_lag`` (Patroni 4); the drills' preflight refused nothing on it before."""

from __future__ import annotations

import pytest

from replication.patroni import parse_cluster

pytestmark = pytest.mark.unit


def member(**extra: object) -> dict[str, object]:
    return {"name": "marseille-db", "role": "sync_standby", "state": "streaming",
            "host": "10.213.0.21", "timeline": 1, "tags": {"site": "marseille"}, **extra}


def test_a_paused_replay_counts_as_lag() -> None:
    view = parse_cluster({"members": [member(lag=0, receive_lag=0, replay_lag=9224)]})
    assert view.members[0].lag_bytes == 9224 and view.max_lag_bytes == 9224


def test_lag_alone_and_none() -> None:
    assert parse_cluster({"members": [member(lag=512)]}).members[0].lag_bytes == 512
    assert parse_cluster({"members": [member(lag=0, replay_lag=0)]}).members[0].lag_bytes == 0
    assert parse_cluster({"members": [member()]}).members[0].lag_bytes is None
