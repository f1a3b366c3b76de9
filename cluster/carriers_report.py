"""``tenir carriers report``: what each site's carrier simulator received, and the references
delivered by more than one site's carriers. A site whose simulator does not answer is reported
as unreachable (with the reason); the report is built from the others. The command fails only
when no simulator answers.

Counts are a non-deduplicating carrier's: every submission is delivered (see
``nodes/carriers/sim/state.py``), so ``duplicates`` is what people would have received twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cluster.httpjson import HttpError, request_json
from cluster.lab.health import carriers_control_url
from cluster.topology import Topology

CHANNELS = ("sms", "email", "voice")


@dataclass(frozen=True)
class CarrierSite:
    site: str
    host: str
    url: str  # the simulator's control API


def carrier_sites(topo: Topology) -> list[CarrierSite]:
    return [CarrierSite(h.site, h.name, carriers_control_url(topo, h))
            for h in topo.hosts_running("carriers")]


def gather(sites: list[CarrierSite], timeout: float = 3.0) -> dict[str, Any]:
    """``{carriers: [{site, host, report} | {site, host, error}], unreachable: [site],
    cross_site_duplicates: {channel: n}}``; cross-site counts cover the sites that answered."""
    carriers: list[dict[str, Any]] = []
    refs: dict[str, dict[str, set[str]]] = {c: {} for c in CHANNELS}
    unreachable: list[str] = []
    for s in sites:
        try:
            _, report = request_json("GET", f"{s.url}/report", timeout=timeout)
            for channel in CHANNELS:
                _, got = request_json("GET", f"{s.url}/references?channel={channel}",
                                      timeout=timeout * 3)
                refs[channel][s.site] = set(got or {})
        except HttpError as exc:
            carriers.append({"site": s.site, "host": s.host, "error": str(exc)})
            unreachable.append(s.site)
            for channel in CHANNELS:
                refs[channel].pop(s.site, None)
            continue
        carriers.append({"site": s.site, "host": s.host, "report": report})
    return {"carriers": carriers, "unreachable": unreachable,
            "cross_site_duplicates": {c: _cross(refs[c]) for c in CHANNELS}}


def _cross(by_site: dict[str, set[str]]) -> int:
    seen: set[str] = set()
    twice: set[str] = set()
    for refs in by_site.values():
        twice |= seen & refs
        seen |= refs
    return len(twice)


def render(result: dict[str, Any], *, as_json: bool) -> tuple[str, int]:
    """The text (or JSON) to print and the exit code: what the simulators that answered say
    (a report after a site loss still shows the survivors), and 1 when any did not answer."""
    answered = len(result["carriers"]) - len(result["unreachable"])
    code = 1 if result["unreachable"] else 0
    if as_json:
        return json.dumps(result, indent=2), code
    lines = []
    for r in result["carriers"]:
        if "error" in r:
            lines.append(f"{r['site']:<10} {r['host']:<20} UNREACHABLE")
            lines.append(f"    {str(r['error'])[:74]}")
            continue
        for channel in CHANNELS:
            c = r["report"].get(channel, {})
            lines.append(f"{r['site']:<10} {channel:<6} received {c.get('received', 0):>8} "
                         f"unique {c.get('unique_references', 0):>8} "
                         f"duplicates {c.get('duplicates', 0):>6}")
    cross = result["cross_site_duplicates"]
    lines.append("references delivered by more than one site's carriers: "
                 + ", ".join(f"{k} {v}" for k, v in cross.items()))
    if result["unreachable"]:
        lines.append(f"  (among the sites that answered; unreachable: "
                     f"{', '.join(result['unreachable'])})")
    if answered == 0:
        lines.append("no carrier simulator answered")
    return "\n".join(lines), code
