"""tenir's chaostoolkit extension: the probes and actions drills name as
``provider: {type: python, module: failover.drills.activities, func: ...}``.

Each function acts on the run bound by the runner (``session.current()``); sites are named by
role (``primary``, ``standby``, ``witness``), resolved when the drill starts. ``REGISTRY``
describes each function for the catalog's validation and for ``plan``: its chaostoolkit type,
its kind (check, campaign, wait, fault, heal, verify) and what it does, with the exact targets
when the sites are known. In a dry run, checks read the cluster (reading is not acting) and
every other step says what it would do and returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from failover.drills import preflight
from failover.drills.facts import Facts
from failover.drills.platform import Platform
from failover.drills.session import Roles, Session, current

Describe = Callable[[dict[str, Any], Roles | None, Platform | None, Any], list[str]]


@dataclass(frozen=True)
class ActivitySpec:
    name: str
    activity_type: str  # chaostoolkit: probe | action
    kind: str  # check | campaign | wait | fault | heal | verify
    describe: Describe


def _site(args: dict[str, Any], key: str, roles: Roles | None) -> str:
    role = str(args.get(key, ""))
    return f"{roles.site(role)} (the {role} site)" if roles else f"the {role} site"


def _bare(args: dict[str, Any], key: str, roles: Roles | None) -> str:
    role = str(args.get(key, ""))
    return roles.site(role) if roles else f"the {role} site"


def _touches(platform: Platform | None, roles: Roles | None, op: str,
             **params: str) -> list[str]:
    if platform is None or roles is None:
        return ["(hosts resolved when the drill starts)"]
    return platform.touches(op, **{k: roles.site(v) for k, v in params.items()})


def _record(s: Session, check: preflight.Check) -> bool:
    s.checks[check.name] = check
    return check.ok


# --- checks (the steady-state hypothesis) -----------------------------------------------------

def quorum_has_spare() -> bool:
    s = current()
    return _record(s, preflight.quorum_has_spare(s.facts(max_age_s=2.0)))


def sync_standby_streaming(max_lag_bytes: int | None = None) -> bool:
    """The synchronous standby streams within the lag allowed. A lag alone is read again for up
    to ``lag_settle_s`` (fresh facts each second): Patroni's figure is as old as its last loop,
    and a drill that follows a write-heavy one found 9 KB left on a standby already caught up."""
    s = current()
    limit = s.settings.max_lag_bytes if max_lag_bytes is None else int(max_lag_bytes)
    facts = s.facts(max_age_s=2.0)
    deadline = time.monotonic() + s.settings.lag_settle_s
    while _only_lagging(facts, limit) and time.monotonic() < deadline:
        if s.stop.event.wait(s.settings.poll_s):
            break  # the drill is being stopped: judge on what was seen
        facts = s.facts(max_age_s=0.5)
    return _record(s, preflight.sync_standby_streaming(facts, limit))


def _only_lagging(facts: Facts, limit: int) -> bool:
    """The synchronous standby streams, but further behind than allowed (nothing else wrong)."""
    sync = facts.sync_standby if facts.primary is not None else None
    return (sync is not None and sync.state == "streaming" and sync.lag_bytes is not None
            and sync.lag_bytes > limit)


def carriers_healthy() -> bool:
    s = current()
    return _record(s, preflight.carriers_healthy(s.facts(max_age_s=2.0), s.sites))


def no_site_drained() -> bool:
    s = current()
    return _record(s, preflight.no_site_drained(s.facts(max_age_s=2.0)))


def no_real_campaign() -> bool:
    s = current()
    return _record(s, preflight.no_real_campaign(s.facts(max_age_s=2.0),
                                                 s.settings.real_campaign_priority,
                                                 s.own_campaigns))


# --- the drill's own campaign ---------------------------------------------------------------

def launch_campaign() -> dict[str, Any]:
    s = current()
    spec = s.drill.campaign
    if s.dry:
        return {"dry_run": f"would launch a test campaign to {spec.describe()}"}
    campaign = s.api.launch(spec.scenario, population=spec.population, group=spec.group,
                            batch_size=spec.batch_size)
    s.campaign_id = campaign
    s.campaign_launched_at = s.clock()
    s.own_campaigns.add(campaign)
    if s.monitor is not None:
        recipients = int(s.api.campaign(campaign)["recipients"])
        s.monitor.record_launch(campaign, recipients, spec.population, spec.scenario)
    return {"campaign": campaign}


def _progress(s: Session) -> tuple[int, int, str]:
    assert s.campaign_id is not None
    c = s.api.campaign(s.campaign_id)
    done = int(c["delivered"]) + int(c["acknowledged"]) + int(c["failed"])
    return done, int(c["recipients"]), str(c["state"])


def wait_campaign_progress(fraction: float = 0.1,
                           timeout_s: float | None = None) -> dict[str, Any]:
    s = current()
    if s.dry:
        return {"dry_run": f"would wait until {fraction:.0%} of the campaign is done"}

    def probe() -> tuple[bool, Any]:
        try:
            done, total, _ = _progress(s)
        except Exception as exc:  # a node not answering is "not yet"
            return False, str(exc)
        return done >= fraction * total, {"done": done, "recipients": total}

    return dict(s.wait(f"{fraction:.0%} of campaign {s.campaign_id} done", probe,
                       timeout_s or s.settings.wait_timeout_s))


def wait_deliveries_resume(timeout_s: float | None = None) -> dict[str, Any]:
    """Until the campaign has a final outcome more than it had when the fault began."""
    s = current()
    if s.dry:
        return {"dry_run": "would wait for the first message delivered after the fault"}
    start = s.fault_at or s.clock()
    before = s.done_at_fault

    def probe() -> tuple[bool, Any]:
        try:
            done, total, state = _progress(s)
        except Exception as exc:
            return False, str(exc)
        base = before if before is not None else done
        return done > base or state != "running", {"done": done, "recipients": total}

    seen = s.wait(f"campaign {s.campaign_id} to deliver after the fault", probe,
                  timeout_s or s.settings.wait_timeout_s)
    return {"seconds_after_the_fault": round(s.clock() - start, 1), **dict(seen)}


def wait_campaign_complete(timeout_s: float | None = None) -> dict[str, Any]:
    s = current()
    if s.dry:
        return {"dry_run": "would wait until the campaign completes"}

    def probe() -> tuple[bool, Any]:
        try:
            done, total, state = _progress(s)
        except Exception as exc:
            return False, str(exc)
        return state != "running", {"done": done, "recipients": total, "state": state}

    return dict(s.wait(f"campaign {s.campaign_id} to complete", probe,
                       timeout_s or s.settings.wait_timeout_s))


# --- faults -----------------------------------------------------------------------------------

def _inject(s: Session, name: str, fault: Any, value: dict[str, Any]) -> dict[str, Any]:
    if s.dry:
        return {"dry_run": f"would {fault.describe()}"}
    if s.campaign_id is not None:
        try:
            s.done_at_fault = _progress(s)[0]
        except Exception:  # unknown: the resume wait counts from its first read
            s.done_at_fault = None
    s.inject(name, fault, value)
    return {"injected": fault.describe()}


def power_cut(site: str) -> dict[str, Any]:
    s = current()
    target = s.site(site)
    return _inject(s, "power_cut", s.platform.power_cut(target), {"site": target})


def cut_link(site_a: str, site_b: str) -> dict[str, Any]:
    s = current()
    a, b = s.site(site_a), s.site(site_b)
    # the side cut from the PostgreSQL primary fails (its nodes fence themselves and their
    # work moves): the duplicates checker's in-flight bound counts its batches, as chaos does
    primary = s.roles.primary
    lost = b if a == primary else a if b == primary else None
    return _inject(s, "cut_link", s.platform.cut_link(a, b),
                   {"sites": [a, b], **({"site": lost} if lost else {})})


def carrier_outage(site: str) -> dict[str, Any]:
    s = current()
    target = s.site(site)
    return _inject(s, "carrier_outage", s.platform.carrier_outage(target), {"site": target})


def switchover(to: str) -> dict[str, Any]:
    s = current()
    target = s.site(to)
    back = s.sites.other(target)
    return _inject(s, "switchover", s.platform.switchover(target, back), {"to": target})


# --- heals and the check that the cluster is whole again ---------------------------------------

def heal() -> dict[str, Any]:
    s = current()
    if s.dry:
        return {"dry_run": "would heal the fault injected last"}
    return {"healed": s.heal_last()}


def heal_all() -> dict[str, Any]:
    s = current()
    if s.dry:
        return {"dry_run": "would heal whatever is still broken"}
    return {"healed": s.heal_all()}


def wait_healthy(standby_site: str | None = None, primary_site: str | None = None,
                 timeout_s: float | None = None) -> dict[str, Any]:
    s = current()
    standby = s.site(standby_site) if standby_site else None
    primary = s.site(primary_site) if primary_site else None
    if s.dry:
        return {"dry_run": "would wait until the cluster is whole again"}

    def probe() -> tuple[bool, Any]:
        facts = s.facts()
        check = preflight.whole(facts, s.sites, standby_site=standby, primary_site=primary)
        carriers = preflight.carriers_healthy(facts, s.sites)  # breakers closed again
        s.checks["whole"] = check
        if check.ok and not carriers.ok:
            return False, carriers.sentence
        return check.ok, check.sentence

    sentence = s.wait("the cluster to be whole again", probe,
                      timeout_s or s.settings.heal_timeout_s, stoppable=False)
    return {"whole": sentence}


# --- what each does, for the catalog and the plan ---------------------------------------------

def _d(text: str) -> Describe:
    return lambda args, roles, platform, drill: [text.format(**args)]


REGISTRY: dict[str, ActivitySpec] = {spec.name: spec for spec in (
    ActivitySpec("quorum_has_spare", "probe", "check",
                 _d("the coordination quorum has a spare member")),
    ActivitySpec("sync_standby_streaming", "probe", "check",
                 lambda a, r, p, d: ["the synchronous standby streams with a lag of at most "
                                     f"{a.get('max_lag_bytes', 'tenir_drill_max_lag_bytes')} "
                                     "bytes, and Patroni has a primary"]),
    ActivitySpec("carriers_healthy", "probe", "check",
                 _d("both sites' carriers work (sms, email, voice)")),
    ActivitySpec("no_site_drained", "probe", "check", _d("no site is drained")),
    ActivitySpec("no_real_campaign", "probe", "check",
                 _d("no real campaign of the configured priority or more urgent runs")),
    ActivitySpec("launch_campaign", "action", "campaign",
                 lambda a, r, p, d: [f"launch the drill's test campaign: "
                                     f"{d.campaign.describe() if d else 'from the inventory'}"]),
    ActivitySpec("wait_campaign_progress", "probe", "wait",
                 lambda a, r, p, d: [f"wait until {float(a.get('fraction', 0.1)):.0%} of the "
                                     "campaign is done"]),
    ActivitySpec("wait_deliveries_resume", "probe", "wait",
                 _d("wait for the first message delivered after the fault")),
    ActivitySpec("wait_campaign_complete", "probe", "wait",
                 _d("wait until the campaign completes")),
    ActivitySpec("power_cut", "action", "fault",
                 lambda a, r, p, d: [f"power cut of every machine of {_site(a, 'site', r)}",
                                     *_touches(p, r, "power_cut", site=str(a["site"]))]),
    ActivitySpec("cut_link", "action", "fault",
                 lambda a, r, p, d: [f"cut the link between {_site(a, 'site_a', r)} and "
                                     f"{_site(a, 'site_b', r)}; both still reach the witness",
                                     *_touches(p, r, "cut_link", site_a=str(a["site_a"]),
                                               site_b=str(a["site_b"]))]),
    ActivitySpec("carrier_outage", "action", "fault",
                 lambda a, r, p, d: [f"every carrier of {_site(a, 'site', r)} refuses",
                                     *_touches(p, r, "carrier_outage", site=str(a["site"]))]),
    ActivitySpec("switchover", "action", "fault",
                 lambda a, r, p, d: [f"planned switchover of the work and the PostgreSQL primary "
                                     f"to {_site(a, 'to', r)}",
                                     *_touches(p, r, "switchover", to_site=str(a["to"]))]),
    ActivitySpec("heal", "action", "heal", _d("heal the fault injected last (switch back, power "
                                              "on, reconnect, restore the carriers)")),
    ActivitySpec("heal_all", "action", "heal", _d("heal whatever the drill still holds broken")),
    ActivitySpec("wait_healthy", "probe", "verify",
                 lambda a, r, p, d: ["wait until the cluster is whole again (every member, "
                                     "HAProxy and carrier)"
                                     + (f", {_bare(a, 'standby_site', r)} back as the "
                                        "synchronous standby" if a.get("standby_site") else "")
                                     + (f", the primary in {_bare(a, 'primary_site', r)}"
                                        if a.get("primary_site") else "")]),
)}
