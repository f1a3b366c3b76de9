"""The auditor's report, built from a *verified* bundle (``tenir evidence report``): what was
planned and done, each drill measured against its targets, real incidents, the time without a
synchronous copy, each section mapped to the clauses it documents, and the checkpoint that lets
a reader verify it all. ``render.py`` turns it into HTML and PDF; ``to_json`` is the JSON form.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from failover.evidence.bundle import Bundle
from failover.evidence.verify import Result, summary

CLAUSES: dict[str, list[str]] = {
    "integrity": ["NIS 2 Art. 21(2)(f)"],
    "programme": ["NIS 2 Art. 21(2)(c)", "CIR 2024/2690 §4.1.4", "ISO 22301 §8.5"],
    "drills": ["CIR 2024/2690 §6.5.2(c)", "NIS 2 Art. 21(2)(f)", "ISO 22301 §8.5"],
    "findings": ["CIR 2024/2690 §4.2.6", "ISO 22301 §8.5"],
    "incidents": ["NIS 2 Art. 21(2)(c)", "CIR 2024/2690 §4.3.4"],
    "rpo": ["NIS 2 Art. 21(2)(c)", "CIR 2024/2690 §4.2.6"],
}
INCIDENT_KINDS = ("watchdog.move", "watchdog.lift", "operator.switchover", "operator.drain",
                  "operator.undrain", "postgres.primary_changed")
SYNC_LOST, SYNC_BACK = "postgres.sync_lost", "postgres.sync_restored"


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s)


def timeline_svg(drill: dict[str, Any]) -> str:
    """The drill's steps as bars on a time axis from its start, with RTO measured vs target."""
    start, end = _t(drill["started_at"]), _t(drill["ended_at"])
    span = max((end - start).total_seconds(), 1.0)
    steps = drill.get("steps", [])
    left, width, row = 250, 420, 22
    height = 40 + row * len(steps) + 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" '
           f'height="{height}" font-family="DejaVu Sans" font-size="10">',
           f'<text x="0" y="14" font-weight="bold">Timeline (s from {escape(drill["started_at"])})'
           '</text>']
    for tick in range(6):
        x = left + width * tick / 5
        out.append(f'<line x1="{x:.1f}" y1="24" x2="{x:.1f}" y2="{30 + row * len(steps)}" '
                   'stroke="#ccc"/>')
        out.append(f'<text x="{x:.1f}" y="{40 + row * len(steps)}" text-anchor="middle">'
                   f'{span * tick / 5:.0f}</text>')
    for i, step in enumerate(steps):
        a = (_t(step["started_at"]) - start).total_seconds()
        b = (_t(step["ended_at"]) - start).total_seconds()
        y = 28 + row * i
        colour = "#c0392b" if step.get("outcome", "ok") not in ("ok", "") else "#2e86c1"
        out.append(f'<text x="0" y="{y + 12}">{escape(step["name"][:45])}</text>')
        out.append(f'<rect x="{left + width * a / span:.1f}" y="{y}" '
                   f'width="{max(width * (b - a) / span, 2):.1f}" height="{row - 6}" '
                   f'fill="{colour}"><title>{escape(step["name"])}: {a:.0f}-{b:.0f} s'
                   '</title></rect>')
    measured, target = drill.get("measured", {}).get("rto_s"), drill["targets"]["rto_s"]
    y = 50 + row * len(steps)
    scale = width / max(float(target), float(measured or 0), 1.0)
    out.append(f'<text x="0" y="{y + 10}">RTO target {target:g} s</text>')
    out.append(f'<rect x="{left}" y="{y}" width="{scale * float(target):.1f}" height="8" '
               'fill="none" stroke="#555" stroke-dasharray="3,2"/>')
    if measured is not None:
        colour = "#27ae60" if measured <= target else "#c0392b"
        out.append(f'<text x="0" y="{y + 24}">RTO measured {measured:g} s</text>')
        out.append(f'<rect x="{left}" y="{y + 14}" width="{scale * float(measured):.1f}" '
                   f'height="8" fill="{colour}"/>')
    out.append("</svg>")
    return "".join(out)


def met(measured: float | None, target: float) -> bool | None:
    """Whether a measure met its target; None when it was not measured."""
    return None if measured is None else measured <= target


def findings_of(drills: list[dict[str, Any]],
                follow_ups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every drill's findings as their latest follow-up records leave them (a follow-up of a
    finding the drill did not list is a finding added afterwards), in the drills' order."""
    current: dict[tuple[str, str], dict[str, Any]] = {}
    for d in drills:
        for f in d.get("findings", []):
            current[(d["id"], f["id"])] = dict(f, drill=d["id"], follow_ups=0)
    for r in follow_ups:
        key = (r["drill"], r["finding"]["id"])
        count = current.get(key, {}).get("follow_ups", 0) + 1
        current[key] = dict(r["finding"], drill=r["drill"], follow_ups=count, updated_at=r["at"])
    return list(current.values())


def _programme(drills: list[dict[str, Any]], schedules: list[dict[str, Any]],
               until: datetime | None) -> list[dict[str, Any]]:
    used: set[str] = set()
    rows = []
    for plan in sorted(schedules, key=lambda s: s["due"]):
        match = next((d for d in sorted(drills, key=lambda d: d["started_at"])
                      if d["drill_type"] == plan["drill_type"] and d["id"] not in used), None)
        if match is not None:
            used.add(match["id"])
            status = f"performed ({match['id']}, {match['started_at']})"
        elif until is not None and _t(plan["due"]) < until:
            status = "overdue: not performed"
        else:
            status = "planned"
        rows.append({"id": plan["id"], "drill_type": plan["drill_type"], "due": plan["due"],
                     "scope": plan["scope"]["description"], "status": status})
    for d in drills:
        if d["id"] not in used:
            rows.append({"id": d["id"], "drill_type": d["drill_type"], "due": None,
                         "scope": d["scope"]["description"],
                         "status": f"performed, not scheduled ({d['started_at']})"})
    return rows


def _rpo_exposure(events: list[dict[str, Any]]) -> dict[str, Any]:
    intervals, lost_at = [], None
    for e in events:
        if e["kind"] == SYNC_LOST and lost_at is None:
            lost_at = e["at"]
        elif e["kind"] == SYNC_BACK and lost_at is not None:
            intervals.append({"from": lost_at, "to": e["at"],
                              "seconds": (_t(e["at"]) - _t(lost_at)).total_seconds()})
            lost_at = None
    recorded = any(e["kind"] in (SYNC_LOST, SYNC_BACK) for e in events)
    return {"recorded": recorded, "intervals": intervals, "open_since": lost_at,
            "total_s": sum(i["seconds"] for i in intervals)}


def build(bundle: Bundle, result: Result) -> dict[str, Any]:
    """The report of a bundle that ``verify_bundle`` checked (its problems are carried)."""
    events: list[dict[str, Any]] = []
    for e in result.entries:
        doc = e.doc()
        events.append({"seq": e.seq,
                       "at": e.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                       "kind": doc.get("kind"),
                       "actor": doc.get("actor"), "node": doc.get("node"),
                       "site": doc.get("site"), "sentence": doc.get("sentence"),
                       "details": doc.get("details", {})})
    records = {seq: r.record for seq, r in result.records.items()}
    drills = [dict(r, seq=s) for s, r in records.items() if r["type"] == "drill"]
    incidents_rec = [dict(r, seq=s) for s, r in records.items() if r["type"] == "incident"]
    schedules = [r for r in records.values() if r["type"] == "schedule"]
    follow_ups = [r for _, r in sorted(records.items()) if r["type"] == "finding"]
    m = bundle.manifest
    until = _t(m["to"]) if m.get("to") else None
    for d in drills:
        d["timeline_svg"] = timeline_svg(d)
        d["rto_met"] = met(d["measured"].get("rto_s"), d["targets"]["rto_s"])
        d["rpo_met"] = met(d["measured"].get("rpo_s"), d["targets"]["rpo_s"])
    top = result.checkpoints[-1] if result.checkpoints else None
    return {
        "title": "Continuity evidence report", "origin": m.get("origin"),
        "period": {"from": m.get("from"), "to": m.get("to"), "range": m.get("range")},
        "exported_at": m.get("exported_at"),
        "checkpoint": None if top is None else {
            "size": top[0].size, "root_hex": top[0].root.hex(), "note": top[0].text(),
            "signed_by": [f"{v.name}+{v.key_id.hex()}" for v in top[1].signers],
            "witness_time": top[1].timestamps},
        "verification": summary(result),
        "programme": _programme(drills, schedules, until),
        "drills": drills,
        "findings": findings_of(drills, follow_ups),
        "incidents": {"records": incidents_rec,
                      "events": [e for e in events if e["kind"] in INCIDENT_KINDS]},
        "rpo_exposure": _rpo_exposure(events),
        "clauses": CLAUSES,
    }
