"""A drill said in full before it runs (``tenir drill show|plan``, and the start of ``run``):
what it is, every check, every step with exactly what it touches (hosts, services, addresses,
when the sites are known), the rollbacks, the stop conditions and the targets it is measured
against."""

from __future__ import annotations

from typing import Any

from failover.drills.activities import REGISTRY
from failover.drills.catalog import Drill
from failover.drills.platform import Platform
from failover.drills.session import Roles, Settings

TARGET_LABELS = {"rto_s": ("time to the first message after the fault", " s"),
                 "rpo_s": ("RPO", " s"), "lost": ("outcomes lost", ""),
                 "sent_twice": ("references sent twice", ""),
                 "complete_s": ("time to complete the campaign", " s")}


def targets_text(targets: dict[str, float | None]) -> list[str]:
    out = []
    for key, (label, unit) in TARGET_LABELS.items():
        value = targets.get(key)
        if value is None and key == "sent_twice":
            out.append(f"{label}: at most what was in flight on the failed side")
        elif value is not None:
            out.append(f"{label}: {value:g}{unit}")
    return out


def _step_lines(activity: dict[str, Any], roles: Roles | None, platform: Platform | None,
                drill: Drill, settings: Settings | None) -> list[str]:
    provider = activity["provider"]
    spec = REGISTRY[provider["func"]]
    args = dict(provider.get("arguments") or {})
    if spec.name == "sync_standby_streaming" and "max_lag_bytes" not in args and settings:
        args["max_lag_bytes"] = settings.max_lag_bytes
    lines = spec.describe(args, roles, platform, drill)
    name = str(activity["name"])
    head = f"[{spec.kind}] {name}"
    if lines[0].lower().rstrip(".") != name.lower().rstrip("."):
        head += f": {lines[0]}"
    return [head, *(f"    touches {line}" for line in lines[1:])]


def plan_lines(drill: Drill, *, roles: Roles | None = None, platform: Platform | None = None,
               settings: Settings | None = None) -> list[str]:
    out = [f"drill {drill.kind}: {drill.title}", f"  {drill.description}",
           f"scope: {drill.scope}"]
    if roles is not None:
        out.append(f"sites: primary {roles.primary}, standby {roles.standby}, witness "
                   f"{roles.witness} (read now; fixed when the drill starts)")
    else:
        out.append("sites: primary, standby and witness are read when the drill starts")
    out.append(f"platform: {platform.name if platform else 'chosen from the inventory'}")
    out.append(f"test campaign: {drill.campaign.describe()}")
    out.append("checks (before the method, and again after it):")
    for i, probe in enumerate(drill.activities("hypothesis"), start=1):
        out.append(f"  {i}. {_step_lines(probe, roles, platform, drill, settings)[0]}")
    out.append("steps:")
    for i, activity in enumerate(drill.activities("method"), start=1):
        first, *rest = _step_lines(activity, roles, platform, drill, settings)
        out.append(f"  {i}. {first}")
        out += [f"  {line}" for line in rest]
    out.append("rollbacks (always, also after a stop):")
    for i, activity in enumerate(drill.activities("rollbacks"), start=1):
        out.append(f"  {i}. {_step_lines(activity, roles, platform, drill, settings)[0]}")
    s = drill.stop
    stops = []
    if s.min_rate_per_s > 0:
        stops.append(f"the campaign delivers under {s.min_rate_per_s:g}/s for "
                     f"{s.min_rate_for_s:g} s")
    if s.real_campaigns:
        priority = settings.real_campaign_priority if settings else "the configured"
        stops.append(f"a real campaign of priority {priority} or more urgent is launched")
    if s.max_lag_bytes is not None:
        stops.append(f"the synchronous standby lags more than {s.max_lag_bytes:,} bytes for "
                     f"{s.max_lag_for_s:g} s")
    stops.append("tenir drill abort (any terminal) or POST /api/v1/drills/abort")
    out.append("stop conditions (any of them heals and records aborted):")
    out += [f"  - {x}" for x in stops]
    out.append("measured against:")
    out += [f"  - {x}" for x in targets_text(settings.targets if settings else {})]
    if settings is None:
        out.append("  - the inventory's tenir_drill_targets")
    out.append(f"invariants judged: {', '.join(drill.invariants)}")
    return out
