"""One scenario run on the lab: prepare, collect, launch, inject at the moment, heal, wait for the
campaign, judge.

1. ``env.prepare()``: the lab up (``Lab.up()``), the carriers back to normal, no campaign left
   running by an earlier run, no chaos rule left in a namespace.
2. The collectors start at the present (``env.collect``: the store observer and each site's
   carrier log), read on a period for the whole run.
3. The workload launches the scenario's campaign; the runner waits for the moment
   (:mod:`chaos.moments`).
4. The PostgreSQL roles are read (which site holds the primary), each fault step is planned
   (:mod:`chaos.matrix`) and injected by the nemesis (which reads every collector first, so that
   what was committed up to the fault is in the history), ``after_s`` apart. A fault aimed at
   alert nodes waits first (at most HOLDER_WAIT_S) until each of them holds a batch: killing or
   freezing a node that holds nothing tests nothing (its checkers would say unknown). At the
   middle of a short campaign, a node may have sent its share while the others still work
   through their reserves; for the
   ``during-pg-failover`` moment the primary's Patroni is stopped first. The last fault is kept
   for its hold, then every fault is healed, the last first.
5. The runner waits for the campaign to complete (until the scenario's ``timeout_s`` from the
   launch, and at least its progress bound after the heal), lets the collectors settle
   (``settle_s``), reads the campaign's end state, and judges the history with every checker
   the scenario names (``chaos.checkers.run.check_all``), then computes the resume time.

A run that cannot be carried out (the lab does not come up, the launch is refused, a fault
fails to inject or heal) keeps its history and says why in ``RunRecord.error``; it counts as a
failure. Every injected fault is healed, whatever happened.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from chaos.checkers.holdings import held_at
from chaos.checkers.run import check_all
from chaos.history import History
from chaos.labops import LabOps
from chaos.matrix import Planned, Roles, Tools, plan
from chaos.moments import CampaignWatch, threshold
from chaos.nemesis import Nemesis
from chaos.process_faults import StopPatroni
from chaos.report import RunRecord
from chaos.resume import resume
from chaos.scenario import Scenario
from chaos.workload import Workload

log = logging.getLogger("tenir.chaos.runner")

HOLDER_WAIT_S = 10.0
HOLDER_POLL_S = 0.1


class RunError(RuntimeError):
    """The run could not be carried out as the scenario says."""


class Collectors(Protocol):
    async def read_all(self) -> None: ...

    async def final(self, campaign: int) -> None: ...


class RunEnv(Protocol):
    @property
    def lab(self) -> LabOps: ...

    @property
    def backend(self) -> str: ...

    @property
    def tools(self) -> Tools: ...

    @property
    def datacenter_sites(self) -> Sequence[str]: ...

    def prepare(self) -> None:
        """Blocking: the lab up and clean (see the module docstring)."""

    def roles(self) -> Roles:
        """Blocking: which datacenter site holds the PostgreSQL primary now."""

    def collect(self, history: History) -> AbstractAsyncContextManager[Collectors]: ...

    async def launch(self, population: int, scenario: str, batch_size: int) -> tuple[int, int]:
        """(campaign id, recipients); raises ``chaos.workload.Refused`` for a refusal."""


Sleep = Callable[[float], Awaitable[Any]]


async def run_scenario(env: RunEnv, scenario: Scenario, seed: int = 0,
                       sleep: Sleep = asyncio.sleep) -> tuple[RunRecord, History]:
    """Run ``scenario`` at its moment (``Scenario.at``; ``middle`` if none was chosen)."""
    moment = scenario.moment or "middle"
    record = RunRecord(scenario.name, moment, env.backend, seed, started_at=time.time())
    history = History()
    began = time.monotonic()
    try:
        await asyncio.to_thread(env.prepare)
        async with env.collect(history) as collectors:
            await _drive(env, scenario, moment, record, history, collectors,
                         random.Random(seed), sleep)
    except Exception as exc:  # said in the record; the history is kept
        record.error = record.error or f"{type(exc).__name__}: {exc}"
    record.duration_s = time.monotonic() - began
    if history.of("final", "ok"):
        record.verdicts = check_all(history, scenario)
    record.resume = resume(history, env.datacenter_sites)
    return record, history


async def _drive(env: RunEnv, scenario: Scenario, moment: str, record: RunRecord,
                 history: History, collectors: Collectors, rng: random.Random,
                 sleep: Sleep) -> None:
    async def launch(population: int, name: str) -> tuple[int, int]:
        return await env.launch(population, name, scenario.batch_size)

    launched_at = time.monotonic()
    campaign = await Workload(history, launch).launch(scenario.population,
                                                      scenario.campaign_scenario)
    if campaign is None:
        last = history.of("launch")[-1].value
        raise RunError(f"the campaign was not launched: {last.get('error', 'no answer')}")
    record.campaigns.append(campaign)
    recipients = int(history.of("launch", "ok")[-1].value["recipients"])
    watch = CampaignWatch(history, campaign)
    if not await watch.until(threshold(moment, recipients), scenario.timeout_s):
        raise RunError(f"campaign {campaign} did not reach its {moment} within "
                       f"{scenario.timeout_s:g} s")
    roles = await asyncio.to_thread(env.roles)
    nemesis = Nemesis(history, barrier=collectors.read_all)
    problems = await inject_and_heal(env, scenario, moment, roles, nemesis, rng, sleep,
                                     collectors.read_all)
    healed = time.monotonic()
    bound = float(scenario.tolerances.get("progress_bound_s", 0.0))
    deadline = max(launched_at + scenario.timeout_s, healed + bound + scenario.settle_s)
    await watch.completed(max(0.0, deadline - time.monotonic()))
    await sleep(scenario.settle_s)
    await collectors.read_all()
    await collectors.final(campaign)
    if problems:
        raise RunError("; ".join(problems))


async def until_holding(history: History, nodes: Sequence[str], read: Callable[[], Awaitable[None]],
                        sleep: Sleep, timeout_s: float = HOLDER_WAIT_S) -> bool:
    """Read the collectors until each of ``nodes`` holds a batch in the history (True), for at
    most ``timeout_s`` (False: the fault goes in all the same, and the checkers that need a
    holder say unknown)."""
    for _ in range(max(1, int(timeout_s / HOLDER_POLL_S))):
        await read()
        holding = {h.node for h in held_at(history, math.inf).values()}
        if set(nodes) <= holding:
            return True
        await sleep(HOLDER_POLL_S)
    return False


async def inject_and_heal(env: RunEnv, scenario: Scenario, moment: str, roles: Roles,
                          nemesis: Nemesis, rng: random.Random, sleep: Sleep,
                          read: Callable[[], Awaitable[None]] | None = None) -> list[str]:
    """Inject the scenario's steps (after the PostgreSQL failover for that moment), hold the
    last, heal them all, the last first. With ``read`` (the collectors), a fault aimed at
    alert nodes first waits until they hold a batch (:func:`until_holding`). Returns what went
    wrong (nothing: [])."""
    injected: list[Planned] = []
    problems: list[str] = []
    try:
        if moment == "during-pg-failover":
            host = env.lab.topo.postgres_host_of_site(roles.primary).name
            pre = Planned("pg_failover", StopPatroni(env.lab, host), {"host": host}, 0.0)
            injected.append(pre)
            await nemesis.inject(pre.name, pre.fault, pre.value)
        hold = 0.0
        for i, step in enumerate(scenario.faults):
            planned = plan(step, env.lab, roles, rng, scenario.fault_s, env.tools)
            if i:
                await sleep(step.after_s)
            nodes = planned.value.get("nodes")
            if read is not None and nodes and not await until_holding(
                    nemesis.history, nodes, read, sleep):
                log.warning("%s: %s held no batch after %.0f s; injecting all the same",
                            planned.name, ", ".join(nodes), HOLDER_WAIT_S)
            injected.append(planned)
            await nemesis.inject(planned.name, planned.fault, planned.value)
            hold = planned.hold_s
        await sleep(hold)
    except Exception as exc:
        problems.append(f"injecting: {type(exc).__name__}: {exc}")
    finally:
        for planned in reversed(injected):
            try:
                await nemesis.heal(planned.name, planned.fault, planned.value)
            except Exception as exc:  # the others are healed all the same
                problems.append(f"healing {planned.name}: {type(exc).__name__}: {exc}")
    return problems
