"""The drill's record (validated by ``failover/evidence/records.py``, signed by the node that
stores it): type, scope, targets, approver, runner, every step with its times (from
chaostoolkit's journal), the measures against their targets, the invariants' verdicts, the
findings with their criticality, and the timeline the report draws (deliveries per second per
site; the fault, the heal, the watchdog's moves, PostgreSQL's failover, leader changes)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from failover.drills.measure import Measures, missed_targets
from failover.drills.session import Mark, Roles
from failover.drills.stops import Sample


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


def _text(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _output(value: Any) -> str:
    """An activity's output in words: ``campaign 12``, ``done 600, recipients 600``."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return _text(", ".join(f"{k.replace('_', ' ')} {v}" if not isinstance(v, str) or k
                               not in ("healed", "injected", "whole", "dry_run") else str(v)
                               for k, v in value.items()))
    return _text(value)


def steps_of(journal: Mapping[str, Any], checks: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every activity chaostoolkit ran (checks before, method, checks after, rollbacks)."""
    parts = [("check", (journal.get("steady_states", {}).get("before") or {}).get("probes", [])),
             ("step", journal.get("run") or []),
             ("check after", (journal.get("steady_states", {}).get("after") or {})
              .get("probes", [])),
             ("rollback", journal.get("rollbacks") or [])]
    out = []
    for label, runs in parts:
        for run in runs:
            activity = run.get("activity", {})
            name = f"{label}: {activity.get('name', '?')}"
            failed = run.get("status") != "succeeded" or run.get("tolerance_met") is False
            func = activity.get("provider", {}).get("func", "")
            check = checks.get(func) if label.startswith("check") else None
            if run.get("exception"):
                detail = _text(run["exception"][-1].strip())
            elif run.get("tenir_check"):
                detail = _text(run["tenir_check"])
            elif check is not None:
                detail = _text(getattr(check, "sentence", check))
            else:
                detail = _output(run.get("output"))
            step = {"name": _text(name, 200), "started_at": run.get("start"),
                    "ended_at": run.get("end") or run.get("start"),
                    "outcome": "failed" if failed else "ok"}
            if detail:
                step["detail"] = detail
            out.append(step)
    return out


def timeline(samples: Sequence[Sample], marks: Iterable[Mark], events: Iterable[dict[str, Any]],
             started: float) -> dict[str, Any]:
    series: dict[str, list[list[float]]] = {}
    known = [s for s in samples if s.delivered_by_site]
    for a, b in itertools.pairwise(known):
        span = b.at - a.at
        if span <= 0:
            continue
        for site in sorted(set(a.delivered_by_site) | set(b.delivered_by_site)):
            rate = max(0.0, (b.delivered_by_site.get(site, 0) - a.delivered_by_site.get(site, 0))
                       / span)
            series.setdefault(site, []).append([round(b.at - started, 2), round(rate, 1)])
    out_marks = [{"at_s": round(max(0.0, m.at - started), 2), "kind": m.kind,
                  "label": _text(m.label, 160)} for m in marks]
    prev_primary = prev_leader = None
    for s in samples:
        if s.primary and prev_primary and s.primary != prev_primary:
            out_marks.append({"at_s": round(s.at - started, 2), "kind": "postgres",
                              "label": f"PostgreSQL primary {prev_primary} -> {s.primary}"})
        if s.leader and prev_leader and s.leader != prev_leader:
            out_marks.append({"at_s": round(s.at - started, 2), "kind": "coordination",
                              "label": f"coordination leader {prev_leader} -> {s.leader}"})
        prev_primary = s.primary or prev_primary
        prev_leader = s.leader or prev_leader
    for e in events:
        kind = str(e.get("kind", ""))
        try:
            at = datetime.fromisoformat(str(e["at"])).timestamp()
        except (KeyError, ValueError):
            continue
        if at < started:
            continue
        mark_kind = "watchdog" if kind.startswith("watchdog.") else (
            "postgres" if kind.startswith("postgres.") else "step")
        out_marks.append({"at_s": round(at - started, 2), "kind": mark_kind,
                          "label": _text(e.get("sentence", kind), 160)})
    out_marks.sort(key=lambda m: float(str(m["at_s"])))
    return {"series": series, "marks": out_marks}


def findings_of(measures: Measures, targets: Mapping[str, float | None], *, outcome: str,
                reason: str | None, steps: Sequence[Mapping[str, Any]], heal_failures: list[str],
                owner: str) -> list[dict[str, Any]]:
    """One finding per thing to correct, with its criticality; the corrective action is the
    review's to decide (``tenir drill finding add|close`` follows it up)."""
    found: list[tuple[str, str]] = []
    for problem in heal_failures:
        found.append(("critical", f"the drill could not heal: {problem}"))
    for v in measures.verdicts:
        if v["verdict"] == "fail":
            crit = "critical" if v["invariant"] in ("recipients", "rpo") else "high"
            found.append((crit, f"invariant {v['invariant']} failed: {v['detail']}"))
        elif v["verdict"] == "not_checked":
            found.append(("low", f"invariant {v['invariant']} not checked: {v['detail']}"))
    for sentence in missed_targets(measures.values, targets):
        crit = "critical" if sentence.startswith(("outcomes lost", "RPO")) else "high"
        found.append((crit, sentence))
    for step in steps:
        if step.get("outcome") == "failed":
            crit = "critical" if step["name"].startswith("check after") else "medium"
            found.append((crit, f"{step['name']} failed: {step.get('detail', '')}".strip()))
    if outcome == "aborted":
        found.append(("medium", f"the drill was aborted: {reason}"))
    return [{"id": f"F{i}", "criticality": crit, "description": _text(text, 1500),
             "corrective_action": {"description": "to be decided at the drill's review",
                                   "owner": owner, "status": "open"}}
            for i, (crit, text) in enumerate(found, start=1)]


def outcome_of(*, stopped: str | None, measures: Measures, targets: Mapping[str, float | None],
               steps: Sequence[Mapping[str, Any]], heal_failures: list[str]
               ) -> tuple[str, str | None]:
    if stopped is not None:
        return "aborted", stopped
    problems = list(heal_failures)
    problems += [f"{v['invariant']}: {v['detail']}" for v in measures.verdicts
                 if v["verdict"] == "fail"]
    problems += missed_targets(measures.values, targets)
    problems += [f"{s['name']}: {s.get('detail', '')}" for s in steps
                 if s.get("outcome") == "failed"]
    if problems:
        return "failed", _text("; ".join(problems), 1900)
    return "passed", None


def build(*, run_id: str, kind: str, title: str, scope: str, roles: Roles,
          sites: Sequence[str], runner: str, approver: str, started: float, ended: float,
          steps: list[dict[str, Any]], measures: Measures, targets: Mapping[str, float | None],
          outcome: str, reason: str | None, findings: list[dict[str, Any]],
          timeline_data: dict[str, Any], campaigns: Sequence[int],
          extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "drill", "id": run_id, "drill_type": kind, "title": title,
        "scope": {"description": scope, "sites": sorted({roles.site(r) for r in sites}),
                  "roles": roles.to_json()},
        "targets": {k: v for k, v in targets.items()},
        "approver": approver, "runner": runner,
        "started_at": iso(started), "ended_at": iso(max(ended, started)),
        "steps": steps, "measured": dict(measures.values), "verdicts": measures.verdicts,
        "findings": findings, "outcome": outcome, "timeline": timeline_data,
        "campaigns_in_flight": [int(c) for c in campaigns],
    }
    if reason:
        record["reason"] = reason
    if extra:
        record.update(extra)
    return record
