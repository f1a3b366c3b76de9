"""What the chaos lab tests share (``test_chaos_matrix.py``, ``test_zookeeper_matrix.py``,
``test_checkers_fail.py``): the CI variant of a scenario (small campaign, short faults), one run
judged by the checkers with its history kept, a superuser connection behind the store's back,
and a deploy with test-only variables that is always undone."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from chaos.history import History
from chaos.lab_env import LabEnv
from chaos.matrix import Tools
from chaos.report import RunRecord, save
from chaos.runner import run_scenario
from chaos.scenario import SCENARIO_DIR, FaultStep, Scenario, load_scenario
from cluster.lab.access import site_haproxy
from cluster.lab.health import patroni_client
from cluster.lab.lab import Lab
from cluster.settings import int_setting
from replication.appdb import APP_DB, dsn

RESULTS = Path(os.environ.get("TENIR_CHAOS_RESULTS", "chaos-results")) / "lab-tests"
SEED = 9
CI_POPULATION = 10_000
CI_FAULT_S = 10.0


NAMED_NODE_FAULTS = ("kill_node", "freeze_node")


def ci_variant(name: str, moment: str | None = None) -> Scenario:
    """The scenario with a campaign of 10,000 recipients and its faults shortened for CI: held
    10 s (a frozen node 12 s: past its membership's 5 s, so that its batches move and its late
    writes meet newer epochs), 5 s of silence before a power cut and power back 15 s after it,
    the double fault's second loss 10 s after the first. Invariants and bounds unchanged.

    ``moment`` by default: ``start`` for a fault aimed at a named alert node (every node then
    sends from the batches it has just claimed; the campaign lasts about 10 s on the lab, and at
    its middle the named node may have sent its share: on 2026-12-01 paris-node1 held no batch
    there, the last 22 were marseille-node1's, and the watchdog and fencing checkers said
    unknown), ``middle`` for the others."""
    s = load_scenario(SCENARIO_DIR / f"{name}.yaml")
    if moment is None:
        named = any(step.name in NAMED_NODE_FAULTS for step in s.faults)
        moment = "start" if named else "middle"

    def short(step: FaultStep, first: bool) -> FaultStep:
        p = dict(step.params)
        if "freeze_s" in p:
            p["freeze_s"] = 12
        if "silence_s" in p:
            p["silence_s"] = min(float(p["silence_s"]), 5.0)
        if "power_back_after_s" in p:
            p["power_back_after_s"] = 15
        return replace(step, params=p, after_s=step.after_s if first else min(step.after_s,
                                                                                10.0))

    faults = tuple(short(f, i == 0) for i, f in enumerate(s.faults))
    return replace(s, faults=faults, population=CI_POPULATION,
                   fault_s=min(s.fault_s, CI_FAULT_S), settle_s=min(s.settle_s, 5.0)).at(moment)


def run(lab: Lab, scenario: Scenario, env: LabEnv | None = None) -> tuple[RunRecord, History]:
    """One run on the lab; its history and verdicts are kept under ``RESULTS``."""
    env = env or LabEnv(lab, Tools(seed=SEED))
    record, history = asyncio.run(run_scenario(env, scenario, SEED))
    where = save(RESULTS, record, history)
    print(f"{scenario.name} at the {scenario.moment} on {record.backend}: "
          f"{[(v.checker, v.validity) for v in record.verdicts]}, resume "
          f"{record.resume.short() if record.resume else '-'} s, duplicates "
          f"{record.duplicates}, {record.duration_s:.0f} s; history in {where}")
    return record, history


def assert_all_valid(record: RunRecord, scenario: Scenario) -> None:
    assert record.error is None, f"{scenario.name}: not run to the end: {record.error}"
    assert [v.checker for v in record.verdicts] == list(scenario.invariants)
    bad = [f"{v.checker} {v.validity}: {v.summary}" for v in record.verdicts if not v.valid]
    assert not bad, f"{scenario.name} at the {scenario.moment}: " + "; ".join(bad) + \
        f" (history in {record.results})"


def verdict(record: RunRecord, checker: str) -> Any:
    return next(v for v in record.verdicts if v.checker == checker)


def superuser_dsn(lab: Lab, site: str | None = None) -> str:
    """The database as PostgreSQL's superuser, through a datacenter site's HAProxy: what a
    test does behind the store's back (the application role cannot)."""
    secrets = lab.layout.load_secrets()
    assert secrets is not None, "the lab has no secrets: is it up?"
    site = site or lab.topo.datacenter_sites[0].name
    host = site_haproxy(lab.topo, site)
    port = int_setting(lab.topo, host, "haproxy", "haproxy_primary_port")
    return dsn(str(host.address), port, "postgres", secrets["superuser"], APP_DB)


def patroni_dynamic(lab: Lab) -> dict[str, Any]:
    """Patroni's dynamic configuration (``GET /config``) from the first member that answers."""
    errors = []
    for host in lab.topo.hosts_running("postgres"):
        try:
            return patroni_client(lab.topo, host).config()
        except Exception as exc:
            errors.append(f"{host.name}: {exc}")
    raise AssertionError(f"no Patroni answers GET /config: {'; '.join(errors)}")


@contextmanager
def deployed_with(lab: Lab, limit: str, extra: dict[str, Any],
                  playbook: str = "site.yml") -> Iterator[None]:
    """``playbook`` run on ``limit`` with test-only variables; run again without them after,
    whatever happened (the roles restart what a changed configuration needs)."""
    secrets = lab.layout.load_or_create_secrets()
    lab.deploy(secrets, playbook=playbook, limit=limit, extra_vars=extra)
    try:
        yield
    finally:
        lab.deploy(secrets, playbook=playbook, limit=limit)
        lab.up(timeout=300, deploy_mode="never")
