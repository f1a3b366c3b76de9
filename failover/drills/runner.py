"""One drill run, end to end: resolve the roles, check (every reason at once), get the run
accepted by the nodes (approval), take the one-drill lock, start the monitor, run the experiment
through chaostoolkit's runner (checks, method, checks again, rollbacks), measure, build the
record and have a node sign and store it.

What chaostoolkit does and what is done around it, and why:

* chaostoolkit runs the experiment: the steady-state hypothesis before and after, the method,
  the rollbacks (strategy ``always``: a stopped or interrupted drill heals too), and keeps the
  journal each step's times come from;
* the checks are first run here, every one of them: chaostoolkit's hypothesis stops at the
  first probe out of tolerance, and an on-call engineer must see every reason to refuse at once;
* stop conditions and the abort lever are watched by the monitor's thread; chaostoolkit's own
  ways to stop (signals, controls raising between activities) cannot end a wait in the middle,
  so a stop sets the session's signal, which tenir's waits obey, and marks the journal aborted,
  which chaostoolkit checks before each step;
* the approval, the record and the ledger are tenir's (chaostoolkit keeps no audit trail);
* ``--dry-run`` runs the same path with every action saying what it would do: chaostoolkit's own
  ``dry`` skips activities without saying what they would have touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from failover.drills import record as records
from failover.drills.activities import REGISTRY
from failover.drills.catalog import Drill
from failover.drills.facts import Facts, Refused, Sites
from failover.drills.measure import Measures, measure
from failover.drills.monitor import Display, Monitor
from failover.drills.preflight import Check, refusal
from failover.drills.session import Roles, Session, bound
from failover.drills.stops import StopJudge
from failover.evidence.records import validate

log = logging.getLogger("tenir.drill")
T = TypeVar("T")


class DrillRefused(RuntimeError):
    """The drill did not start; nothing was changed. The message says every reason."""


class DrillControl(Protocol):
    """The nodes' side of a run (``nodes/api/drills.py``), through any node that answers."""

    def start_run(self, kind: str, run_id: str, *, approval: str | None,
                  approved_by: str | None) -> dict[str, Any]: ...
    def store_record(self, run_id: str, record: dict[str, Any]) -> int: ...
    def cancel_campaign(self, campaign_id: int) -> None: ...


@dataclass
class RunResult:
    run_id: str | None
    outcome: str  # passed | failed | aborted | refused | dry-run
    reason: str | None = None
    record: dict[str, Any] | None = None
    stored_seq: int | None = None
    store_problem: str | None = None
    checks: list[Check] = field(default_factory=list)
    folder: Path | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome in ("passed", "dry-run") else 1


def resolve_roles(facts: Facts, sites: Sites) -> Roles:
    primary = facts.primary
    if primary is None or primary.site not in sites.datacenters:
        raise DrillRefused("preflight refused: Patroni reports no PostgreSQL primary in a "
                           "datacenter site, so the drill cannot tell which site is which")
    return Roles(primary.site, sites.other(primary.site), sites.witness)


def preflight(session: Session) -> list[Check]:
    """Every check of the drill's hypothesis, each on the same fresh read."""
    session.facts()
    for probe in session.drill.activities("hypothesis"):
        provider = probe["provider"]
        fn = getattr(__import__(provider["module"], fromlist=[provider["func"]]),
                     provider["func"])
        fn(**(provider.get("arguments") or {}))
    return list(session.checks.values())


class _Events:
    """chaostoolkit's event handler: the current step for the live view and the stop logic."""

    def __init__(self, session: Session, say: Callable[[str], None], dry: bool) -> None:
        self.session = session
        self.say = say
        self.dry = dry
        self.journal: dict[str, Any] | None = None

    def started(self, experiment: Any, journal: dict[str, Any]) -> None:
        self.journal = journal
        self.session.journal = journal

    def start_activity(self, activity: dict[str, Any]) -> None:
        self.session.step = str(activity.get("name", ""))
        self.session.step_started = time.monotonic()

    def activity_completed(self, activity: dict[str, Any], run: dict[str, Any]) -> None:
        func = activity.get("provider", {}).get("func", "")
        spec = REGISTRY.get(func)
        output = run.get("output")
        check = self.session.checks.get(func)
        if spec is not None and spec.kind == "check" and check is not None:
            run["tenir_check"] = check.sentence  # as it was then: checks run before and after
        if self.dry and isinstance(output, dict) and "dry_run" in output:
            self.say(f"  dry run: {output['dry_run']}")
        if run.get("status") != "succeeded" and spec is not None and spec.kind != "check" \
                and self.journal is not None:
            # a step that failed ends the method (what follows it would wait in vain); the
            # rollbacks heal
            self.session.failed_step = str(activity.get("name"))
            self.journal["status"] = "aborted"


def run_experiment(session: Session, say: Callable[[str], None],
                   log: logging.Handler | None = None) -> dict[str, Any]:
    """chaostoolkit's runner on the drill's experiment, the session bound; the journal.
    chaostoolkit's own log goes to ``log`` (the run's log file), never to the terminal."""
    from chaoslib.run import Runner
    from chaoslib.types import Strategy

    ctk = logging.getLogger("chaostoolkit")
    ctk.propagate = False
    handler: logging.Handler = log if log is not None else logging.NullHandler()
    ctk.addHandler(handler)
    events = _Events(session, say, session.dry)
    try:
        with bound(session), Runner(Strategy.DEFAULT) as runner:
            runner.register_event_handler(events)
            journal: dict[str, Any] = runner.run(
                copy.deepcopy(dict(session.drill.experiment)),
                settings={"runtime": {"rollbacks": {"strategy": "always"}}})
    finally:
        ctk.removeHandler(handler)
    return journal


@contextlib.contextmanager
def run_log(folder: Path, run_id: str) -> Iterator[logging.Handler]:
    """The run's log, JSON lines in ``folder/drill.log`` (redacted as the nodes' are): what the
    monitor, the collectors and chaostoolkit say, kept off the live view."""
    from nodes.logs import JsonFormatter

    handler = logging.FileHandler(folder / "drill.log", encoding="utf-8")
    handler.setFormatter(JsonFormatter(f"drill {run_id}", socket.gethostname()))
    handler.setLevel(logging.INFO)
    tenir = logging.getLogger("tenir")
    level = tenir.level
    tenir.setLevel(logging.INFO)
    tenir.addHandler(handler)
    try:
        yield handler
    finally:
        tenir.removeHandler(handler)
        tenir.setLevel(level)
        handler.close()


def run_folder(run_id: str) -> Path:
    base = Path(os.environ.get("TENIR_DRILL_DIR")
                or Path.home() / ".local" / "state" / "tenir" / "drills")
    folder = base / run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Context:
    """Everything a run needs that is not the drill itself (``cluster/drill_cli.py`` builds it
    from the inventory; the tests from fakes)."""

    sites: Sites
    make_session: Callable[[Roles], Session]
    control: DrillControl
    lever: Callable[[], Any] | None = None  # async context manager factory -> Lever
    collectors: Callable[[Any], Any] | None = None  # history -> async cm -> collectors
    display: Callable[[Session], Display] | None = None
    runner_name: str = ""
    say: Callable[[str], None] = print
    monitor_period_s: float = 1.0
    collect_period_s: float = 0.5


def run(ctx: Context, drill: Drill, *, dry: bool = False, approval: str | None = None,
        approved_by: str | None = None, first_facts: Facts | None = None) -> RunResult:
    say = ctx.say
    probe_session = ctx.make_session(Roles("?", "?", ctx.sites.witness))
    facts = first_facts or probe_session.facts()
    roles = resolve_roles(facts, ctx.sites)
    session = ctx.make_session(roles)
    session.dry = dry
    with bound(session):
        checks = preflight(session)
    refused = refusal(checks)
    for c in checks:
        say(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.sentence}")
    if dry:
        say(f"dry run of {drill.kind}: primary site {roles.primary}, standby site "
            f"{roles.standby}, witness {roles.witness}; nothing is changed")
        journal = run_experiment(session, say)
        say(f"dry run done ({journal.get('status')}): nothing was changed"
            + (f"; a real run would be refused: {refused}" if refused else ""))
        return RunResult(None, "dry-run" if not refused else "refused", refused, checks=checks)
    if refused:
        return RunResult(None, "refused", refused, checks=checks)
    run_id = new_run_id(drill.kind, session.clock())
    note = _with_lever(ctx, lambda lever: lever.acquire(run_id, drill.kind, ctx.runner_name,
                                                        socket.gethostname()))
    if note:
        say(note)
    try:
        started = ctx.control.start_run(drill.kind, run_id, approval=approval,
                                        approved_by=approved_by)
        runner, approver = str(started["runner"]), str(started["approver"])
        say(f"drill {run_id}: run by {runner}, approved by {approver}")
        return _run_accepted(ctx, drill, session, run_id, runner, approver, checks)
    finally:
        try:
            _with_lever(ctx, lambda lever: lever.release(run_id))
        except Exception as exc:  # the lock expires on its own (stale heartbeat)
            say(f"the drill lock was not released ({exc}); it goes stale in a minute")


def new_run_id(kind: str, at: float) -> str:
    return f"{kind}-{datetime.fromtimestamp(at, UTC).strftime('%Y%m%dT%H%M%SZ')}"


def _with_lever(ctx: Context, action: Callable[[Any], Awaitable[T]]) -> T | None:
    """``action(lever)`` on a lever of its own (one connection, closed after)."""
    if ctx.lever is None:
        return None
    factory = ctx.lever

    async def go() -> T:
        async with factory() as lever:
            return await action(lever)

    return asyncio.run(go())


def _run_accepted(ctx: Context, drill: Drill, session: Session, run_id: str, runner: str,
                  approver: str, checks: list[Check]) -> RunResult:
    say = ctx.say
    folder = run_folder(run_id)
    judge = StopJudge(drill.stop, session.settings.real_campaign_priority,
                      {c.id for c in session.facts().campaigns or ()})
    monitor = Monitor(session, run_id, judge=judge, lever=ctx.lever,
                      collectors=ctx.collectors,
                      display=ctx.display(session) if ctx.display else None,
                      period_s=ctx.monitor_period_s, collect_period_s=ctx.collect_period_s)
    session.injector = monitor
    session.monitor = monitor
    started = session.clock()
    journal: dict[str, Any] = {}
    with run_log(folder, run_id) as log, _monitoring(monitor):
        journal = run_experiment(session, say, log)
        if journal.get("status") == "interrupted" and session.stop.reason is None:
            session.stop.set("interrupted by the runner (Ctrl-C or SIGTERM)", "runner")
        _cancel_own_campaign(ctx, session, say)
        if session.campaign_id is not None:
            monitor.final_read(session.campaign_id)
    ended = session.clock()
    summary = _summary(session)
    m = measure(monitor.history, monitor.samples, campaign=session.campaign_id,
                launched_at=session.campaign_launched_at, fault_at=session.fault_at,
                done_at_fault=session.done_at_fault, invariants=drill.invariants,
                targets=session.settings.targets, api_summary=summary)
    steps = records.steps_of(journal, session.checks)
    stopped = session.stop.reason
    outcome, reason = records.outcome_of(stopped=stopped, measures=m,
                                         targets=session.settings.targets, steps=steps,
                                         heal_failures=session.heal_failures)
    record = records.build(
        run_id=run_id, kind=drill.kind, title=drill.title, scope=drill.scope,
        roles=session.roles, sites=drill.sites, runner=runner, approver=approver,
        started=started, ended=ended, steps=steps, measures=m,
        targets=session.settings.targets, outcome=outcome, reason=reason,
        findings=records.findings_of(m, session.settings.targets, outcome=outcome,
                                     reason=reason, steps=steps,
                                     heal_failures=session.heal_failures, owner=runner),
        timeline_data=records.timeline(monitor.samples, session.marks,
                                       monitor.events.values(), started),
        campaigns=sorted(session.own_campaigns),
        extra={"stopped_by": session.stop.by} if stopped else None)
    _keep(folder, record, journal, monitor, m)
    validate(record)  # what the node checks: a record it would refuse is a bug here
    result = RunResult(run_id, outcome, reason, record, checks=checks, folder=folder)
    try:
        result.stored_seq = _store(ctx, run_id, record)
    except Exception as exc:
        result.store_problem = (f"the record was NOT stored in the ledger ({exc}); it is kept "
                                f"in {folder / 'record.json'}: tenir drill record "
                                f"{folder / 'record.json'} stores it later")
    if session.unhealed:
        say(f"NOT HEALED: {', '.join(session.unhealed)}")
    return result


@contextlib.contextmanager
def _monitoring(monitor: Monitor) -> Iterator[Monitor]:
    monitor.start()
    try:
        yield monitor
    finally:
        monitor.close()


def _cancel_own_campaign(ctx: Context, session: Session, say: Callable[[str], None]) -> None:
    """A stopped drill does not leave its test campaign sending."""
    if session.stop.reason is None or session.campaign_id is None:
        return
    try:
        state = session.api.campaign(session.campaign_id).get("state")
        if state == "running":
            ctx.control.cancel_campaign(session.campaign_id)
            say(f"the drill's test campaign {session.campaign_id} was cancelled")
    except Exception as exc:
        say(f"could not cancel the drill's test campaign {session.campaign_id}: {exc}")


def _summary(session: Session) -> dict[str, Any] | None:
    if session.campaign_id is None:
        return None
    try:
        return session.api.campaign(session.campaign_id)
    except Exception:
        return None


def _store(ctx: Context, run_id: str, record: dict[str, Any], attempts: int = 10) -> int:
    """Stored through a node; retried for a while (a site just came back, PostgreSQL is
    promoting): not when the nodes refuse it or cannot sign it."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return ctx.control.store_record(run_id, record)
        except Refused:
            raise
        except Exception as exc:
            if "no site key" in str(exc):
                raise
            last = exc
            time.sleep(3)
    assert last is not None
    raise last


def _keep(folder: Path, record: dict[str, Any], journal: dict[str, Any], monitor: Monitor,
          m: Measures) -> None:
    (folder / "record.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (folder / "journal.json").write_text(json.dumps(journal, indent=2, default=str) + "\n",
                                         encoding="utf-8")
    monitor.history.write(folder / "history.jsonl")
    (folder / "verdicts.json").write_text(json.dumps(
        [v.as_dict() for v in m.checker_verdicts], indent=2) + "\n", encoding="utf-8")


def runner_identity() -> str:
    """Where the run happens, for the lock (who runs it is the API's answer)."""
    return f"{os.environ.get('USER', 'unknown')}@{socket.gethostname()}"
