"""``tenir chaos``: the fault scenarios on the lab, judged by the checkers.

- ``run SCENARIO|--all [--coordination B] [--seed N] [--moment M] [--json] [--results DIR]``
- ``soak --duration D [--seed N] [--population N] [--coordination B] [--json] [--results DIR]``
- ``schedule --duration D [--seed N] [--coordination B] [--json]``: the faults a soak with that
  seed injects, without running anything
- ``matrix [--backends etcd,zookeeper] [--moments start,middle,end] [--doc FILE]``: every
  scenario at every moment on each backend (``make chaos-matrix``); ``--doc`` writes the table
  into the file's marked section with the date and commit

Each run's history and verdicts are kept under ``--results`` (default ``$TENIR_CHAOS_RESULTS``,
else ``chaos-results``). Exit 1 when a verdict is invalid or a run could not be carried out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaos.matrix import Tools
from chaos.report import RunRecord, problems, save, table
from chaos.scenario import BACKENDS, MOMENTS, SCENARIO_DIR, Scenario, load_all, load_scenario
from cluster.textfit import echo
from cluster.topology import COORDINATION_BACKENDS, Topology, with_coordination

if TYPE_CHECKING:
    from chaos.lab_env import LabEnv

REPO = Path(__file__).resolve().parents[1]


class ChaosUsageError(ValueError):
    pass


def _err(text: str) -> None:
    echo(text, sys.stderr)


def default_results() -> str:
    return os.environ.get("TENIR_CHAOS_RESULTS", "chaos-results")


def scenario_named(name: str) -> Scenario:
    path = Path(name) if name.endswith(".yaml") else SCENARIO_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(SCENARIO_DIR.glob("*.yaml")))
        raise ChaosUsageError(f"no scenario {name!r} (known: {known})")
    return load_scenario(path)


def select(scenarios: list[Scenario], backend: str, moment: str,
           every: bool) -> list[Scenario]:
    """The scenarios to run at ``moment`` on ``backend``; with ``every`` (``--all``) those that
    do not apply are skipped (and said), otherwise refused."""
    chosen = []
    for s in scenarios:
        why = (f"does not run on {backend} (backends: {', '.join(s.backends)})"
               if backend not in s.backends else
               f"has no moment {moment} (moments: {', '.join(s.moments)})"
               if moment not in s.moments else None)
        if why is None:
            chosen.append(s.at(moment))
        elif every:
            _err(f"skipped: {s.name} {why}")
        else:
            raise ChaosUsageError(f"scenario {s.name} {why}")
    return chosen


def _lab(topo: Topology, seed: int) -> LabEnv:
    from chaos.lab_env import LabEnv
    from cluster.lab.lab import Lab

    return LabEnv(Lab(topo, say=_err), Tools(seed=seed))


def run_many(topo: Topology, scenarios: list[Scenario], seed: int,
             results: Path) -> list[RunRecord]:
    from chaos.runner import run_scenario

    env = _lab(topo, seed)
    records = []
    for s in scenarios:
        _err(f"{s.name} at the {s.moment} on {topo.coordination}: running")
        record, history = asyncio.run(run_scenario(env, s, seed))
        where = save(results, record, history)
        state = "valid" if record.ok and all(v.valid for v in record.verdicts) else \
            "not valid" if not record.ok else "valid, with unknowns"
        _err(f"{s.name} at the {s.moment}: {state} ({record.duration_s:.0f} s; {where})")
        records.append(record)
    return records


def _report(records: list[RunRecord], as_json: bool) -> int:
    if as_json:
        print(json.dumps({"runs": [r.as_dict(details=True) for r in records]}, indent=2,
                         default=str))
    else:
        echo(table(records))
        found = problems(records)
        if found:
            echo(["", *found])
    return 0 if all(r.ok for r in records) else 1


def cmd_run(args: argparse.Namespace, topo: Topology) -> int:
    if bool(args.scenario) == bool(args.all):
        raise ChaosUsageError("name one scenario, or --all")
    scenarios = load_all() if args.all else [scenario_named(args.scenario)]
    chosen = select(scenarios, topo.coordination, args.moment, args.all)
    return _report(run_many(topo, chosen, args.seed, Path(args.results)), args.json)


def cmd_schedule(args: argparse.Namespace, topo: Topology) -> int:
    from chaos.soak import parse_duration, schedule

    events = schedule(args.seed, parse_duration(args.duration), load_all(), topo.coordination)
    if args.json:
        print(json.dumps({"seed": args.seed, "backend": topo.coordination,
                          "events": [e.as_dict() for e in events]}, indent=2))
        return 0
    echo(f"soak of {args.duration} with seed {args.seed} on {topo.coordination}: "
         f"{len(events)} faults (pauses count from the previous heal's end)")
    for i, e in enumerate(events, start=1):
        echo(f"{i:>3}. after {e.pause_s:>6.1f} s  {e.scenario:<26} fault seed {e.seed}")
    return 0


def cmd_soak(args: argparse.Namespace, topo: Topology) -> int:
    from chaos.soak import parse_duration, run_soak

    duration = parse_duration(args.duration)
    env = _lab(topo, args.seed)
    _err(f"soak of {args.duration} with seed {args.seed} on {topo.coordination}: running "
         f"(tenir chaos schedule --duration {args.duration} --seed {args.seed} lists its "
         "faults)")
    record, history, _events = asyncio.run(run_soak(env, load_all(), duration, args.seed,
                                                    args.population))
    save(Path(args.results), record, history)
    return _report([record], args.json)


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cmd_matrix(args: argparse.Namespace, topo: Topology) -> int:
    from chaos.matrix_doc import rewrite, section
    from cluster.lab.lab import Lab, lab_coordination

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    moments = [m.strip() for m in args.moments.split(",") if m.strip()]
    for b in backends:
        if b not in BACKENDS:
            raise ChaosUsageError(f"--backends: {b!r} is not one of {', '.join(BACKENDS)}")
    for m in moments:
        if m not in MOMENTS:
            raise ChaosUsageError(f"--moments: {m!r} is not one of {', '.join(MOMENTS)}")
    records: list[RunRecord] = []
    for backend in backends:
        topo_b = with_coordination(topo, backend)
        running = lab_coordination(topo_b)
        if running is not None and running != backend:
            _err(f"the lab runs with {running}: taking it down to run on {backend}")
            Lab(topo_b, say=_err).down()
        chosen = [s.at(m) for s in load_all() if backend in s.backends
                  for m in moments if m in s.moments]
        records += run_many(topo_b, chosen, args.seed, Path(args.results))
    if args.doc:
        doc = Path(args.doc)
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        failed = sum(1 for r in records if not r.ok)
        command = (f"tenir chaos matrix --backends {','.join(backends)} --moments "
                   f"{','.join(moments)} --seed {args.seed}")
        lines = section(table(records), date, _commit(), len(records), failed, command)
        doc.write_text(rewrite(doc.read_text(encoding="utf-8"), lines, str(doc)),
                       encoding="utf-8")
        _err(f"table written into {doc}")
    return _report(records, args.json)


COMMANDS = {"run": cmd_run, "soak": cmd_soak, "schedule": cmd_schedule, "matrix": cmd_matrix}


def cmd_chaos(args: argparse.Namespace) -> int:
    from chaos.scenario import ScenarioError
    from cluster.cli import _inventory

    try:
        return COMMANDS[args.chaos_command](args, _inventory(args))
    except (ChaosUsageError, ScenarioError, ValueError) as exc:
        _err(f"tenir chaos {args.chaos_command}: {exc}")
        return 1


def add_parsers(sub: Any) -> None:
    chaos = sub.add_parser("chaos", help="fault scenarios on the lab judged by checkers "
                           "(exit 1 if a verdict is invalid)")
    csub = chaos.add_subparsers(dest="chaos_command", required=True)

    def common(p: argparse.ArgumentParser, results: bool = True) -> None:
        p.add_argument("--coordination", choices=COORDINATION_BACKENDS,
                       help="the lab's coordination service (default: the running lab's, "
                            "else the inventory's)")
        p.add_argument("--seed", type=int, default=0, help="the run's random choices")
        p.add_argument("--json", action="store_true")
        if results:
            p.add_argument("--results", default=default_results(), metavar="DIR",
                           help="where each run's history and verdicts are kept (default "
                                "$TENIR_CHAOS_RESULTS or chaos-results)")

    run = csub.add_parser("run", help="run one scenario (or --all) on the lab")
    run.add_argument("scenario", nargs="?", help="a name of chaos/scenarios (node-kill) or a "
                     "YAML file")
    run.add_argument("--all", action="store_true", help="every scenario for the backend")
    run.add_argument("--moment", choices=MOMENTS, default="middle",
                     help="when the fault comes (default middle)")
    common(run)
    soak = csub.add_parser("soak", help="random faults of the matrix during continuous "
                           "campaigns, judged as one history")
    soak.add_argument("--duration", required=True, help="600, 90s, 10m, 1h30m")
    soak.add_argument("--population", type=int, default=20_000,
                      help="recipients of each campaign (default 20000)")
    common(soak)
    sched = csub.add_parser("schedule", help="the faults a soak with that seed injects")
    sched.add_argument("--duration", required=True, help="600, 90s, 10m, 1h30m")
    common(sched, results=False)
    matrix = csub.add_parser("matrix", help="every scenario at every moment on each backend")
    matrix.add_argument("--backends", default="etcd,zookeeper")
    matrix.add_argument("--moments", default="start,middle,end")
    matrix.add_argument("--doc", metavar="FILE", help="write the table into FILE's marked "
                        "section (docs/chaos.md)")
    common(matrix)
    chaos.set_defaults(func=cmd_chaos)
