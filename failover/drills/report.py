"""A drill's record as ``tenir drill report ID`` shows it: text lines for the terminal, and an
HTML page built from the evidence report's drill section (``_drill.html.j2``) with a timeline
chart: deliveries per second per site, and the fault, the heal, the watchdog's moves,
PostgreSQL's failover and the coordination leader changes as marked instants."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from failover.drills.plan import TARGET_LABELS
from failover.evidence.report import met, timeline_svg

COLOURS = ("#2e86c1", "#d35400", "#27ae60", "#8e44ad")
MARK_COLOURS = {"fault": "#c0392b", "heal": "#27ae60", "watchdog": "#8e44ad",
                "postgres": "#d35400", "coordination": "#7f8c8d", "stop": "#000000",
                "step": "#95a5a6"}


def chart_svg(record: dict[str, Any], width: int = 720, height: int = 240) -> str:
    """Deliveries per second per site over the drill, with its marked instants (numbered; the
    page lists them)."""
    tl = record.get("timeline") or {}
    series: dict[str, list[list[float]]] = tl.get("series") or {}
    marks: list[dict[str, Any]] = tl.get("marks") or []
    left, top, plot_w, plot_h = 50, 20, width - 70, height - 60
    span = max([p[0] for pts in series.values() for p in pts]
               + [float(m["at_s"]) for m in marks] + [1.0])
    peak = max([p[1] for pts in series.values() for p in pts] + [1.0])

    def x(t: float) -> float:
        return left + plot_w * t / span

    def y(v: float) -> float:
        return top + plot_h * (1 - v / peak)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="DejaVu Sans" font-size="10" role="img" '
           'aria-label="deliveries per second per site">',
           f'<text x="{left}" y="12" font-weight="bold">Deliveries per second per site '
           f'(x: seconds from the start)</text>']
    for i in range(6):
        t = span * i / 5
        out.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{top + plot_h}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{x(t):.1f}" y="{top + plot_h + 14}" text-anchor="middle">'
                   f'{t:.0f}</text>')
    for v in (0.0, peak / 2, peak):
        out.append(f'<text x="{left - 4}" y="{y(v) + 3:.1f}" text-anchor="end">{v:,.0f}</text>')
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
               f'y2="{top + plot_h}" stroke="#555"/>')
    for n, m in enumerate(marks, start=1):
        colour = MARK_COLOURS.get(str(m["kind"]), "#555")
        mx = x(float(m["at_s"]))
        out.append(f'<line x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + plot_h}" '
                   f'stroke="{colour}" stroke-dasharray="4,2"><title>{escape(str(m["label"]))}'
                   '</title></line>')
        out.append(f'<text x="{mx + 2:.1f}" y="{top + 10 + 11 * ((n - 1) % 4)}" '
                   f'fill="{colour}">{n}</text>')
    for i, (site, pts) in enumerate(sorted(series.items())):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                   f'points="{path}"/>')
        out.append(f'<text x="{left + 10 + 110 * i}" y="{height - 8}" fill="{colour}">'
                   f'{escape(site)} deliveries/s</text>')
    out.append("</svg>")
    return "".join(out)


def prepare(view: dict[str, Any]) -> dict[str, Any]:
    """The record of ``GET /api/v1/drills/records/{id}`` ready for the template."""
    d = dict(view["record"], seq=view.get("seq"))
    d["timeline_svg"] = timeline_svg(d)
    d["rto_met"] = met(d["measured"].get("rto_s"), d["targets"]["rto_s"])
    d["rpo_met"] = met(d["measured"].get("rpo_s"), d["targets"]["rpo_s"])
    return d


def to_html(view: dict[str, Any]) -> str:
    env = Environment(loader=PackageLoader("failover.evidence", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined)
    d = prepare(view)
    return env.get_template("drill.html.j2").render(
        d=d, chart=chart_svg(d), marks=(d.get("timeline") or {}).get("marks", []),
        findings=view.get("findings", d.get("findings", [])),
        signed_by=view.get("signed_by", ""), colours=MARK_COLOURS)


def _measure(key: str, value: Any) -> str:
    if value is None:
        return "not measured"
    unit = " s" if key.endswith("_s") else ""
    return f"{value:g}{unit}"


def text_lines(view: dict[str, Any]) -> list[str]:
    d = view["record"]
    out = [f"drill {d['id']} ({d['drill_type']}): {str(d.get('outcome', '?')).upper()}"
           + (f": {d['reason']}" if d.get("reason") else ""),
           f"scope: {d['scope']['description']} (sites: {', '.join(d['scope'].get('sites', []))})",
           f"from {d['started_at']} to {d['ended_at']}",
           f"approved by {d['approver']}; run by {d['runner']}",
           f"signed by {view.get('signed_by', '?')} (ledger entry {view.get('seq', '?')})",
           "measured against targets:"]
    labels = {**TARGET_LABELS, "max_gap_s": ("longest time without a delivery", " s"),
              "pg_failover_s": ("PostgreSQL failover (infrastructure)", " s"),
              "leader_changes": ("coordination leader changes (infrastructure)", "")}
    for key, (label, _) in labels.items():
        got, want = d["measured"].get(key), d["targets"].get(key)
        if got is None and want is None:
            continue
        verdict = "" if got is None or want is None else ("; met" if got <= want
                                                          else "; MISSED")
        target = "" if want is None else f" (target {_measure(key, want)})"
        out.append(f"  {label}: {_measure(key, got)}{target}{verdict}")
    out.append("invariants:")
    out += [f"  {v['invariant']}: {v['verdict']}"
            + (f" ({v['detail']})" if v.get("detail") else "") for v in d.get("verdicts", [])]
    out.append("steps:")
    for s in d.get("steps", []):
        out.append(f"  {s['started_at'][11:23]} {s['name']}: {s.get('outcome', '')}"
                   + (f" ({s['detail']})" if s.get("detail") else ""))
    findings = view.get("findings", d.get("findings", []))
    out.append(f"findings: {len(findings) or 'none'}")
    for f in findings:
        action = f["corrective_action"]
        out.append(f"  {f['id']} [{f['criticality']}] {f['description']}; action: "
                   f"{action['description']} ({action['owner']}, {action['status']})")
    return out
