"""What the drills' unit tests share: a shipped drill shrunk to run in a second on the fake
cluster (a small campaign, fast polling), and the runner's context on it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from failover.drills.catalog import CampaignSpec, Drill, StopLimits, find
from failover.drills.lever import Lever
from failover.drills.runner import Context
from failover.drills.session import Roles, Session, Settings
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator
from tests.fakes.drill_cluster import SITES, FakeCluster

TARGETS: dict[str, float | None] = {"rto_s": 5.0, "rpo_s": 0.0, "lost": 0.0,
                                    "sent_twice": None, "complete_s": 60.0}


def small(kind: str, *, population: int = 600, stop: StopLimits | None = None) -> Drill:
    drill = find(kind)
    return replace(drill, campaign=CampaignSpec("demo", population=population),
                   stop=stop or StopLimits(min_rate_per_s=0.0, real_campaigns=True))


def settings(**targets: float | None) -> Settings:
    return Settings(targets={**TARGETS, **targets}, real_campaign_priority=5, poll_s=0.02,
                    wait_timeout_s=15.0, heal_timeout_s=15.0, lag_settle_s=0.2)


def lever_on(server: FakeCoordinationServer) -> Callable[[], Any]:
    @contextlib.asynccontextmanager
    async def open_lever() -> AsyncIterator[Lever]:
        yield Lever(FakeCoordinator(server, "drill-runner"))

    return open_lever


def context(cluster: FakeCluster, drill: Drill, said: list[str], *,
            server: FakeCoordinationServer | None = None,
            s: Settings | None = None) -> Context:
    chosen = s or settings()

    def make_session(roles: Roles) -> Session:
        return Session(drill, sites=SITES, roles=roles, cluster=cluster, platform=cluster,
                       api=cluster, settings=chosen, say=said.append)

    return Context(sites=SITES, make_session=make_session, control=cluster,
                   lever=lever_on(server) if server is not None else None,
                   runner_name="tester@host", say=said.append, monitor_period_s=0.02)
