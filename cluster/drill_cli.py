"""``tenir drill ...``: failover drills (docs/drills.md). A thin layer: the drills are
``failover/drills/``, the nodes' side ``nodes/api/drills.py``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cluster.textfit import echo
from cluster.topology import Topology


def _say(text: str) -> None:
    echo(text)


def _err(text: str) -> None:
    echo(text, sys.stderr)


def _nodes(topo: Topology, token: str | None = None) -> Any:
    from failover.drills.build import runner_token
    from failover.drills.real_cluster import Nodes

    return Nodes(topo, token or runner_token(), timeout=10.0)


def cmd_list(args: argparse.Namespace, topo: Topology) -> int:
    from failover.drills.catalog import load_all
    from failover.drills.schedule import describe_interval
    from failover.drills.settings import intervals

    every = intervals(topo)
    schedule: dict[str, Any] = {}
    problem = None
    try:
        data = _nodes(topo).call("GET", "/drills/schedule")
        schedule = {d["drill"]: d for d in data["drills"]}
    except Exception as exc:  # the list is data: it is shown without the cluster too
        problem = f"last runs unknown: {exc}"
    rows = []
    for d in load_all():
        s = schedule.get(d.kind, {})
        last = (s.get("last_run") or {}).get("at")
        rows.append({"drill": d.kind, "title": d.title,
                     "interval": describe_interval(every[d.kind]) if d.kind in every else None,
                     "last_run": last, "overdue": s.get("overdue")})
    if args.json:
        print(json.dumps({"drills": rows, "problem": problem}, indent=2))
        return 0
    for r in rows:
        when = r["interval"] or "no interval"
        last = r["last_run"][:16] if r["last_run"] else "never run"
        flag = "  OVERDUE" if r["overdue"] else ""
        echo(f"{r['drill']:<22} {when:<12} {last}{flag}")
        echo(f"    {r['title']}")
    if problem:
        _err(problem)
    return 0


def _drill_and_settings(topo: Topology, kind: str) -> Any:
    from failover.drills.catalog import find
    from failover.drills.settings import drill_settings

    return drill_settings(topo, find(kind))


def cmd_show(args: argparse.Namespace, topo: Topology) -> int:
    from failover.drills.plan import plan_lines

    drill, settings = _drill_and_settings(topo, args.drill)
    echo(plan_lines(drill, settings=settings))
    return 0


def cmd_plan(args: argparse.Namespace, topo: Topology) -> int:
    """Every step with the exact hosts it touches, sites read now; nothing is changed."""
    from failover.drills.build import context_for
    from failover.drills.plan import plan_lines
    from failover.drills.runner import resolve_roles

    drill, settings = _drill_and_settings(topo, args.drill)
    ctx, _api, platform = context_for(topo, drill, settings, stream=sys.stdout, say=_say)
    from failover.drills.session import Roles

    facts = ctx.make_session(Roles("?", "?", ctx.sites.witness)).facts()
    roles = resolve_roles(facts, ctx.sites)
    echo(plan_lines(drill, roles=roles, platform=platform, settings=settings))
    return 0


def cmd_run(args: argparse.Namespace, topo: Topology) -> int:
    from failover.drills import runner
    from failover.drills.build import context_for

    drill, settings = _drill_and_settings(topo, args.drill)
    out = _err if args.json else _say
    stream = sys.stderr if args.json else sys.stdout
    ctx, _api, platform = context_for(topo, drill, settings, stream=stream, say=out)
    if not args.dry_run and args.approval is None and args.approved_by is None:
        raise runner.DrillRefused("a real drill needs the approval of someone other than its "
                                  "runner: --approval N (from tenir drill approve, run by "
                                  "them) or --approved-by NAME; or --dry-run")
    out(f"drill {drill.kind} on {platform.name}: {drill.title}")
    result = runner.run(ctx, drill, dry=args.dry_run, approval=args.approval,
                        approved_by=args.approved_by)
    if result.outcome == "refused":
        raise runner.DrillRefused(result.reason or "refused")
    if result.record is not None:
        m = result.record["measured"]
        out(f"drill {result.run_id} {result.outcome.upper()}"
            + (f": {result.reason}" if result.reason else ""))
        out("measured: " + ", ".join(f"{k} {v:g}" for k, v in m.items() if v is not None))
        if result.stored_seq is not None:
            out(f"record stored and signed (ledger entry {result.stored_seq}); "
                f"tenir drill report {result.run_id}")
        if result.store_problem:
            _err(result.store_problem)
        out(f"journal, history and record kept in {result.folder}")
    if args.json:
        print(json.dumps({"run_id": result.run_id, "outcome": result.outcome,
                          "reason": result.reason, "seq": result.stored_seq,
                          "checks": [c.to_json() for c in result.checks],
                          "measured": (result.record or {}).get("measured")}, indent=2))
    return result.exit_code


def cmd_approve(args: argparse.Namespace, topo: Topology) -> int:
    from failover.drills.build import approver_token

    body: dict[str, Any] = {"drill": args.drill}
    if args.valid_for is not None:
        body["valid_for_s"] = args.valid_for
    data = _nodes(topo, approver_token()).call("POST", "/drills/approvals", body)
    if args.id_only:
        print(data["approval"])
    else:
        echo(f"approval {data['approval']} of drill {data['drill']} by {data['approver']}, "
             f"valid until {data['expires_at']}; the runner passes --approval "
             f"{data['approval']}")
    return 0


def cmd_abort(args: argparse.Namespace, topo: Topology) -> int:
    reason = args.reason or "aborted by an operator"
    if args.via_api:
        data = _nodes(topo).call("POST", "/drills/abort", {"run_id": args.run, "reason": reason})
        echo(f"abort requested through the API by {data['by']} at {data['at']}")
        return 0
    import asyncio

    from failover.drills.build import lever_for
    from failover.drills.runner import runner_identity

    async def pull() -> Any:
        async with lever_for(topo)() as lever:
            active = await lever.active()
            request = await lever.request_abort(runner_identity(), reason, args.run)
            return active, request

    active, request = asyncio.run(pull())
    running = (f"drill {active.get('run')} ({active.get('drill')})" if active
               else "no drill holds the lock now")
    echo(f"abort requested by {request.by} at {request.at} for "
         f"{args.run or 'whichever drill runs'} ({running}); the drill heals and records "
         "aborted within seconds")
    return 0


def cmd_report(args: argparse.Namespace, topo: Topology) -> int:
    from failover.drills.report import text_lines, to_html

    view = _nodes(topo).call("GET", f"/drills/records/{args.id}")
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        echo(text_lines(view))
    out = Path(args.html or f"drill-{args.id}.html")
    out.write_text(to_html(view), encoding="utf-8")
    (_err if args.json else _say)(f"HTML report written to {out}")
    return 0


def cmd_record(args: argparse.Namespace, topo: Topology) -> int:
    record = json.loads(Path(args.file).read_text(encoding="utf-8"))
    data = _nodes(topo).call("POST", f"/drills/runs/{record['id']}/record", record)
    echo(f"record of drill {record['id']} stored and signed (ledger entry {data['seq']})")
    return 0


def cmd_finding(args: argparse.Namespace, topo: Topology) -> int:
    nodes = _nodes(topo)
    if args.finding_command == "add":
        action: dict[str, Any] = {"description": args.action, "owner": args.owner}
        if args.due:
            action["due"] = args.due
        data = nodes.call("POST", f"/drills/records/{args.id}/findings",
                          {"criticality": args.criticality, "description": args.description,
                           "corrective_action": action})
    else:
        data = nodes.call("POST", f"/drills/records/{args.id}/findings/{args.finding}",
                          {"status": args.status, "note": args.note})
    f = data["finding"]
    echo(f"finding {f['id']} of drill {args.id}: {f['corrective_action']['status']} "
         f"(signed follow-up, ledger entry {data['seq']})")
    return 0


def cmd_snapshot(args: argparse.Namespace, topo: Topology) -> int:
    from failover.drills.build import state_of
    from failover.drills.snapshot import write

    write(state_of(topo), Path(args.out))
    echo(f"cluster state written to {args.out}")
    return 0


def cmd_compare(args: argparse.Namespace, topo: Topology) -> int:
    from failover.drills.snapshot import diff, read

    changes = diff(read(Path(args.before)), read(Path(args.after)))
    if not changes:
        echo("no difference: the cluster is as it was")
        return 0
    echo([f"{len(changes)} difference(s):", *(f"  - {c}" for c in changes)])
    return 1


def add_parsers(sub: Any) -> None:
    drill = sub.add_parser("drill", help="failover drills: list, show, plan, run (dry or real, "
                           "approved), abort, report, findings")
    ds = drill.add_subparsers(dest="drill_command", required=True)
    ls = ds.add_parser("list", help="the shipped drills, their interval, last run, overdue")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func_topo=cmd_list)
    for name, fn, text in (("show", cmd_show, "the drill as data: checks, steps, stops"),
                           ("plan", cmd_plan, "every step with the hosts it touches (sites "
                                              "read now); changes nothing")):
        p = ds.add_parser(name, help=text)
        p.add_argument("drill")
        p.set_defaults(func_topo=fn)
    run = ds.add_parser("run", help="run a drill (exit 1 unless it passed); --dry-run says "
                        "every step without acting")
    run.add_argument("drill")
    run.add_argument("--dry-run", action="store_true",
                     help="checks read the cluster; every other step says what it would do")
    run.add_argument("--approval", help="an approval number (tenir drill approve, by someone "
                     "else)")
    run.add_argument("--approved-by", help="a user of the API, other than you, who approved")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func_topo=cmd_run)
    ap = ds.add_parser("approve", help="approve a drill for someone else to run (24 h)")
    ap.add_argument("drill")
    ap.add_argument("--valid-for", type=float, help="seconds the approval holds (default "
                    "86400)")
    ap.add_argument("--id-only", action="store_true", help="print only the approval number")
    ap.set_defaults(func_topo=cmd_approve)
    ab = ds.add_parser("abort", help="the safety lever: the running drill heals and records "
                       "aborted")
    ab.add_argument("--run", help="the run to stop (default: whichever runs)")
    ab.add_argument("--reason", help="why (in the record)")
    ab.add_argument("--via-api", action="store_true", help="through an alert node instead of "
                    "the coordination service")
    ab.set_defaults(func_topo=cmd_abort)
    rp = ds.add_parser("report", help="a drill's record; writes its HTML page")
    rp.add_argument("id")
    rp.add_argument("--html", help="where to write the page (default drill-ID.html)")
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func_topo=cmd_report)
    rc = ds.add_parser("record", help="store a record kept on disk (when storing it failed)")
    rc.add_argument("file")
    rc.set_defaults(func_topo=cmd_record)
    fd = ds.add_parser("finding", help="follow a drill's findings up (signed records)")
    fs = fd.add_subparsers(dest="finding_command", required=True)
    fa = fs.add_parser("add", help="add a finding and its corrective action")
    fa.add_argument("id")
    fa.add_argument("--criticality", required=True, choices=("low", "medium", "high",
                                                             "critical"))
    fa.add_argument("--description", required=True)
    fa.add_argument("--action", required=True, help="the corrective action")
    fa.add_argument("--owner", required=True)
    fa.add_argument("--due", help="RFC 3339 time with its zone (2027-01-15T00:00:00Z)")
    fc = fs.add_parser("close", help="close a finding's corrective action (done)")
    fc.add_argument("id")
    fc.add_argument("finding", help="F1, F2...")
    fc.add_argument("--note")
    fc.add_argument("--status", default="done", choices=("in_progress", "done"))
    fd.set_defaults(func_topo=cmd_finding)
    sn = ds.add_parser("snapshot", help="write the cluster's state (to compare before/after)")
    sn.add_argument("out")
    sn.set_defaults(func_topo=cmd_snapshot)
    cp = ds.add_parser("compare", help="name every difference between two snapshots (exit 1 "
                       "if any)")
    cp.add_argument("before")
    cp.add_argument("after")
    cp.set_defaults(func_topo=cmd_compare)
