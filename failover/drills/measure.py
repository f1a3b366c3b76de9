"""What a drill measured, in business terms and beside them the infrastructure's view, from the
run's history (the chaos collectors: the store observer, the carriers' logs) and the monitor's
samples (one a second):

* ``rto_s``: time to the first message delivered after the fault (the observer's outcomes;
  without an observer, the samples, to the second);
* ``rpo_s``: how far back committed outcomes were lost, 0 when none (chaos's ``rpo`` checker);
* ``lost``: committed outcomes lost or rewritten (chaos's ``rpo`` checker);
* ``sent_twice``: references submitted twice (chaos's ``duplicates`` checker, on the carriers'
  submission logs);
* ``complete_s``: launch to completion of the campaign (the observer, else the API);
* ``max_gap_s``: the longest time without a delivery after the fault (the observer);
* ``pg_failover_s``: fault to a new PostgreSQL primary (the samples, to the second);
* ``leader_changes``: coordination leader changes during the drill (the samples).

A measure that could not be taken is None, never a guess.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chaos.checkers import duplicates, recipients, rpo
from chaos.checkers.verdict import Verdict
from chaos.history import History
from failover.drills.stops import Sample

DELIVERED = ("delivered", "acknowledged")
VERDICT_OF = {"valid": "pass", "invalid": "fail", "unknown": "not_checked"}


@dataclass
class Measures:
    values: dict[str, float | None] = field(default_factory=dict)
    verdicts: list[dict[str, str]] = field(default_factory=list)
    checker_verdicts: list[Verdict] = field(default_factory=list)


def _delivery_times(history: History, campaign: int | None) -> list[float]:
    return sorted(float(op.value["recorded_at"]) for op in history.of("outcome", "ok")
                  if op.value.get("state") in DELIVERED and op.value.get("final")
                  and (campaign is None or int(op.value["campaign"]) == campaign))


def first_message_s(history: History, samples: Sequence[Sample], campaign: int | None,
                    fault_at: float | None, done_at_fault: int | None) -> float | None:
    if fault_at is None:
        return None
    if history.of("read", "ok"):
        after = [t for t in _delivery_times(history, campaign) if t > fault_at]
        return round(after[0] - fault_at, 3) if after else None
    base = done_at_fault
    for s in samples:
        if s.at <= fault_at or s.done is None:
            continue
        if base is None:
            base = s.done
            continue
        if s.done > base:
            return round(s.at - fault_at, 1)
    return None


def max_gap_s(history: History, campaign: int | None, fault_at: float | None) -> float | None:
    if fault_at is None or not history.of("read", "ok"):
        return None
    times = [fault_at] + [t for t in _delivery_times(history, campaign) if t > fault_at]
    if len(times) < 2:
        return None
    return round(max(b - a for a, b in itertools.pairwise(times)), 3)


def pg_failover_s(samples: Sequence[Sample], fault_at: float | None) -> float | None:
    if fault_at is None:
        return None
    before = next((s.primary for s in reversed(samples) if s.at <= fault_at and s.primary),
                  None)
    for s in samples:
        if s.at > fault_at and s.primary is not None and s.primary != before:
            return round(s.at - fault_at, 1)
    return None


def leader_changes(samples: Sequence[Sample]) -> int:
    leaders = [s.leader for s in samples if s.leader]
    return sum(1 for a, b in itertools.pairwise(leaders) if a != b)


def complete_s(history: History, campaign: int | None, launched_at: float | None,
               api_summary: dict[str, Any] | None) -> float | None:
    if campaign is None or launched_at is None:
        return None
    done = [op for op in history.of("complete", "ok") if int(op.value["campaign"]) == campaign]
    if done:
        return round(float(done[-1].value.get("completed_at") or done[-1].at) - launched_at, 3)
    if api_summary and api_summary.get("completed_at") and api_summary.get("started_at"):
        from datetime import datetime

        took = (datetime.fromisoformat(api_summary["completed_at"])
                - datetime.fromisoformat(api_summary["started_at"])).total_seconds()
        return round(took, 3)
    return None


def _rpo_seconds(verdict: Verdict, history: History, fault_at: float | None) -> float | None:
    if verdict.validity == "valid":
        return 0.0
    if verdict.validity == "unknown" or fault_at is None:
        return None
    lost = [float(history.ops[i].value["recorded_at"]) for o in verdict.offences
            for i in o.ops[:1] if history.ops[i].f == "outcome"]
    return round(fault_at - min(lost), 3) if lost else None


def only_campaigns(history: History, campaigns: set[int]) -> History:
    """The history of ``campaigns`` alone (what else ran meanwhile is not the drill's to
    judge): their launches, outcomes, final reads and completions, the claims of their batches
    (as the final reads list them), the submissions of their references; and every read, fault,
    heal, gap and event."""
    batches = {int(b) for op in history.of("final", "ok")
               if int(op.value["campaign"]) in campaigns
               for b in op.value.get("batch_members", {})}
    prefixes = tuple(f"{c}:" for c in campaigns)
    out = History()

    def mine(op: Any) -> bool:
        v = op.value
        if op.f == "launch":
            return op.type != "ok" or int(v["campaign"]) in campaigns
        if op.f in ("outcome", "final", "complete"):
            return int(v["campaign"]) in campaigns
        if op.f == "submit":
            return str(v["reference"]).startswith(prefixes)
        if op.f in ("claim", "stale_write"):
            return int(v["batch"]) in batches
        return True

    out.extend(op for op in history if mine(op))
    return out


def measure(history: History, samples: Sequence[Sample], *, campaign: int | None,
            launched_at: float | None, fault_at: float | None, done_at_fault: int | None,
            invariants: Sequence[str], targets: Mapping[str, float | None],
            api_summary: dict[str, Any] | None = None) -> Measures:
    m = Measures()
    if campaign is not None:
        history = only_campaigns(history, {campaign})
    observed = bool(history.of("read", "ok"))
    carriers = bool(history.of("submit", "ok"))
    for name in invariants:
        if name == "recipients":
            v = recipients.check(history) if observed else None
        elif name == "rpo":
            v = rpo.check(history) if observed and fault_at is not None else None
        elif name == "duplicates":
            v = duplicates.check(history) if carriers else None
        else:  # progress: the campaign completed within its target
            v = None
        if v is not None:
            m.checker_verdicts.append(v)
            m.verdicts.append({"invariant": name, "verdict": VERDICT_OF[v.validity],
                               "detail": v.summary})
        elif name != "progress":
            why = ("no store observer (no DSN)" if name != "duplicates" else
                   "no carrier submission log (real carriers keep theirs)")
            if name == "rpo" and observed:
                why = "no fault was injected"
            m.verdicts.append({"invariant": name, "verdict": "not_checked", "detail": why})
    by_name = {v.checker: v for v in m.checker_verdicts}
    lost = by_name.get("rpo")
    dup = by_name.get("duplicates")
    m.values = {
        "rto_s": first_message_s(history, samples, campaign, fault_at, done_at_fault),
        "rpo_s": None if lost is None else _rpo_seconds(lost, history, fault_at),
        "lost": None if lost is None or lost.validity == "unknown" else float(
            lost.offence_count),
        "sent_twice": None if dup is None else float(dup.figures.get("duplicates", 0)),
        "complete_s": complete_s(history, campaign, launched_at, api_summary),
        "max_gap_s": max_gap_s(history, campaign, fault_at),
        "pg_failover_s": pg_failover_s(samples, fault_at),
        "leader_changes": float(leader_changes(samples)),
    }
    if "progress" in invariants:
        took, bound = m.values["complete_s"], targets.get("complete_s")
        if took is None:
            m.verdicts.append({"invariant": "progress", "verdict": "fail" if campaign else
                               "not_checked", "detail": "the campaign did not complete"})
        else:
            ok = bound is None or took <= bound
            m.verdicts.append({"invariant": "progress", "verdict": "pass" if ok else "fail",
                               "detail": f"completed {took:.1f} s after its launch"
                               + (f" (target {bound:g} s)" if bound is not None else "")})
    return m


def missed_targets(values: Mapping[str, float | None],
                   targets: Mapping[str, float | None]) -> list[str]:
    """Sentences for each measured value above its target."""
    out = []
    names = {"rto_s": "time to the first message after the fault", "rpo_s": "RPO",
             "lost": "outcomes lost", "sent_twice": "references sent twice",
             "complete_s": "time to complete the campaign"}
    for key, label in names.items():
        target, got = targets.get(key), values.get(key)
        if target is not None and got is not None and got > target:
            unit = " s" if key.endswith("_s") else ""
            out.append(f"{label} {got:g}{unit} above the target {target:g}{unit}")
    return out
