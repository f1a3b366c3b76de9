"""The soak: random faults of the matrix during continuous campaigns, judged as one history.

The schedule is a pure function of the seed (:func:`schedule`): which scenarios' faults, in
which order, each after which pause, with which sub-seed (what a fault chooses at random: a site
``any``, the coordination member to kill). The pauses count from the previous heal's end, not
from the soak's start: heals last as long as the lab takes to be whole again, and the same seed
must give the same faults in the same order whatever the machine's speed. ``tenir chaos soak
--seed N`` therefore reproduces a run's schedule, and ``tenir chaos schedule`` prints it.

While the faults come and go, the workload keeps one campaign running (the next is launched
when the previous completes). At the end no new campaign starts, the last one is followed to
completion, every campaign's end state is read, and the whole history is judged by every
checker with the loosest tolerance of the scenarios involved.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from chaos.checkers.run import check_all
from chaos.history import History
from chaos.moments import CampaignWatch
from chaos.nemesis import Nemesis
from chaos.report import RunRecord
from chaos.resume import resume
from chaos.runner import Collectors, RunEnv, Sleep, inject_and_heal
from chaos.scenario import INVARIANTS, Scenario
from chaos.workload import Workload

HEAL_ESTIMATE_S = 30.0  # what a heal that waits for the lab to be whole takes, roughly
PAUSES_S = (20.0, 60.0)  # between a heal's end and the next fault


@dataclass(frozen=True)
class SoakEvent:
    pause_s: float  # after the previous heal ended (the first: after the first launch)
    scenario: str
    seed: int  # the fault's own random choices

    def as_dict(self) -> dict[str, Any]:
        return {"pause_s": self.pause_s, "scenario": self.scenario, "seed": self.seed}


def parse_duration(text: str) -> float:
    """``600``, ``600s``, ``10m``, ``1h30m``: seconds (> 0); a clear error otherwise."""
    raw = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        seconds = float(raw)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise ValueError(f"duration {text!r}: a number of seconds, or like 90s, 10m, 1h30m")
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"duration {text!r}: must be more than 0")
    return seconds


def cost_s(scenario: Scenario) -> float:
    """Roughly how long one of its faults lasts, heal included."""
    after = sum(step.after_s for step in scenario.faults[1:])
    return after + scenario.fault_s + HEAL_ESTIMATE_S * len(scenario.faults)


def eligible(scenarios: Sequence[Scenario], backend: str) -> list[Scenario]:
    return sorted((s for s in scenarios if backend in s.backends), key=lambda s: s.name)


def schedule(seed: int, duration_s: float, scenarios: Sequence[Scenario], backend: str,
             pauses_s: tuple[float, float] = PAUSES_S) -> list[SoakEvent]:
    """Pure: the faults a soak of ``duration_s`` injects, in order (see the module docstring).
    At least one when any scenario runs on ``backend``."""
    pool = eligible(scenarios, backend)
    if not pool:
        raise ValueError(f"no scenario runs on {backend}")
    rng = random.Random(seed)
    events: list[SoakEvent] = []
    spent = 0.0
    while True:
        pause = round(rng.uniform(*pauses_s), 3)
        chosen = rng.choice(pool)
        sub = rng.randrange(2**31)
        cost = pause + cost_s(chosen)
        if events and spent + cost > duration_s:
            return events
        events.append(SoakEvent(pause, chosen.name, sub))
        spent += cost


def soak_scenario(scenarios: Sequence[Scenario]) -> Scenario:
    """Every invariant, with the loosest tolerances of ``scenarios`` (the soak's judge)."""
    t: dict[str, Any] = {}
    for s in scenarios:
        for key, value in s.tolerances.items():
            if key == "watchdog_margin_s":
                t[key] = min(float(value), t.get(key, float(value)))
            elif key in ("rpo_exposure",):
                t[key] = bool(value) or t.get(key, False)
            elif key != "expect_refusals":
                t[key] = max(float(value), t.get(key, float(value)))
    t.setdefault("progress_bound_s", 300.0)
    base = scenarios[0]
    return replace(base, name="soak", description="random faults during continuous campaigns",
                   invariants=INVARIANTS, tolerances=t, moment="middle")


async def run_soak(env: RunEnv, scenarios: Sequence[Scenario], duration_s: float, seed: int,
                   population: int = 20_000, sleep: Sleep = asyncio.sleep,
                   ) -> tuple[RunRecord, History, list[SoakEvent]]:
    events = schedule(seed, duration_s, scenarios, env.backend)
    by_name = {s.name: s for s in scenarios}
    judge = soak_scenario([by_name[e.scenario] for e in events])
    record = RunRecord("soak", f"{duration_s:g}s", env.backend, seed, started_at=time.time())
    history = History()
    began = time.monotonic()
    try:
        await asyncio.to_thread(env.prepare)
        async with env.collect(history) as collectors:
            await _soak(env, events, by_name, judge, population, duration_s, record, history,
                        collectors, sleep)
    except Exception as exc:
        record.error = record.error or f"{type(exc).__name__}: {exc}"
    record.duration_s = time.monotonic() - began
    if history.of("final", "ok"):
        record.verdicts = check_all(history, judge)
    record.resume = resume(history, env.datacenter_sites)
    return record, history, events


async def _soak(env: RunEnv, events: list[SoakEvent], by_name: dict[str, Scenario],
                judge: Scenario, population: int, duration_s: float, record: RunRecord,
                history: History, collectors: Collectors, sleep: Sleep) -> None:
    stop = asyncio.Event()
    deadline = time.monotonic() + duration_s

    async def launch(pop: int, name: str) -> tuple[int, int]:
        return await env.launch(pop, name, judge.batch_size)

    async def campaigns() -> None:
        workload = Workload(history, launch)
        while not stop.is_set():
            campaign = await workload.launch(population, judge.campaign_scenario)
            if campaign is None:
                await sleep(5.0)  # the store may be failing over: try again
                continue
            record.campaigns.append(campaign)
            await CampaignWatch(history, campaign).completed(judge.timeout_s)
            await sleep(1.0)  # the next one after a breath, as an operator would

    problems: list[str] = []
    runner = asyncio.create_task(campaigns(), name="soak-campaigns")
    try:
        nemesis = Nemesis(history, barrier=collectors.read_all)
        for event in events:
            if time.monotonic() >= deadline:
                break
            await sleep(event.pause_s)
            scenario = by_name[event.scenario]
            roles = await asyncio.to_thread(env.roles)
            problems += await inject_and_heal(env, scenario, "middle", roles, nemesis,
                                              random.Random(event.seed), sleep)
            if runner.done():
                break
        while time.monotonic() < deadline and not runner.done():  # campaigns go on
            await sleep(min(5.0, deadline - time.monotonic()))
    finally:
        stop.set()
    try:
        await asyncio.wait_for(runner, judge.timeout_s + judge.tolerances["progress_bound_s"])
    except TimeoutError:
        problems.append("the last campaign did not complete in time")
    await sleep(judge.settle_s)
    await collectors.read_all()
    for campaign in record.campaigns:
        await collectors.final(campaign)
    if problems:
        record.error = "; ".join(problems)
