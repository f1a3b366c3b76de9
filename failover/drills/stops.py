"""Stop conditions on business signals, judged on the monitor's samples (one a second). Any of
them stops the drill: it heals and records "aborted" with the sentence returned here.

* the drill's own campaign delivers under ``min_rate_per_s`` for ``min_rate_for_s`` seconds
  (judged only while it runs, once it has run that long);
* a real campaign (not the drill's, not seen when the drill started) of the configured
  priority or a more urgent one is launched meanwhile, even one that ended between samples,
  or the running campaigns cannot be read for a minute (the drill could no longer see one);
* the synchronous standby lags more than ``max_lag_bytes`` for ``max_lag_for_s`` seconds;
* the abort lever (``lever.py``) names this run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from failover.drills.catalog import StopLimits
from failover.drills.facts import CampaignFact


@dataclass(frozen=True)
class Sample:
    at: float  # wall time
    done: int | None = None  # the drill campaign's recipients with a final outcome
    delivered_by_site: dict[str, int] = field(default_factory=dict)
    state: str | None = None  # the drill campaign's state
    primary: str | None = None
    sync_standby: str | None = None
    lag_bytes: int | None = None
    leader: str | None = None
    campaigns: tuple[CampaignFact, ...] | None = None


def rate_over(samples: Sequence[Sample], since: float) -> float | None:
    """Final outcomes per second of the drill campaign from ``since`` to the last sample."""
    known = [s for s in samples if s.done is not None]
    if not known or known[-1].at <= since:
        return None
    first = next((s for s in known if s.at >= since), None)
    if first is None or first is known[-1]:
        return None
    assert first.done is not None and known[-1].done is not None
    return (known[-1].done - first.done) / (known[-1].at - first.at)


def low_rate(samples: Sequence[Sample], limits: StopLimits, launched_at: float | None,
             fault_at: float | None = None) -> str | None:
    if limits.min_rate_per_s <= 0 or launched_at is None or not samples:
        return None
    now = samples[-1].at
    if samples[-1].state not in (None, "running") or now - launched_at < limits.min_rate_for_s:
        return None
    rate = rate_over(samples, now - limits.min_rate_for_s)
    if rate is None or rate >= limits.min_rate_per_s:
        return None
    when = "" if fault_at is None else f" ({now - fault_at:.0f} s after the fault)"
    return (f"the drill's campaign delivered {rate:.1f}/s over the last "
            f"{limits.min_rate_for_s:g} s, under {limits.min_rate_per_s:g}/s{when}")


def real_campaign(campaigns: Iterable[CampaignFact] | None, known: set[int], own: set[int],
                  priority: int) -> str | None:
    """A campaign the drill did not see when it began and is not its own, whatever its state:
    a real alert to a small group can be launched and completed between two samples (the lab's
    on-call group: well under a second), and it was launched during the drill all the same."""
    for c in campaigns or ():
        if c.id in known or c.id in own:
            continue
        if c.priority is None or c.priority <= priority:
            return (f"real campaign {c.id} ({c.scenario}, priority "
                    f"{'?' if c.priority is None else c.priority}) was launched during the drill")
    return None


def blind(samples: Sequence[Sample], limit_s: float) -> str | None:
    """The running campaigns unreadable for ``limit_s``: a real one may have been launched."""
    if not samples or samples[-1].campaigns is not None:
        return None
    seen = next((s.at for s in reversed(samples) if s.campaigns is not None), samples[0].at)
    if samples[-1].at - seen < limit_s:
        return None
    return (f"the running campaigns could not be read for {samples[-1].at - seen:.0f} s: the "
            "drill cannot tell whether a real campaign was launched")


def lagging(samples: Sequence[Sample], limits: StopLimits) -> str | None:
    if limits.max_lag_bytes is None or not samples:
        return None
    now = samples[-1].at
    window = [s for s in samples if s.at >= now - limits.max_lag_for_s]
    if not window or now - window[0].at < limits.max_lag_for_s * 0.9:
        return None
    if all(s.lag_bytes is not None and s.lag_bytes > limits.max_lag_bytes for s in window):
        return (f"the synchronous standby {samples[-1].sync_standby} lagged more than "
                f"{limits.max_lag_bytes:,} bytes for {limits.max_lag_for_s:g} s (last "
                f"{samples[-1].lag_bytes:,} bytes)")
    return None


@dataclass
class StopJudge:
    """What the monitor asks after each sample."""

    limits: StopLimits
    priority: int
    known_campaigns: set[int] = field(default_factory=set)  # seen when the drill began
    # Longer than a PostgreSQL failover (the nodes answer 503 meanwhile), short enough that a
    # real alert is not left to compete with the drill for long.
    blind_limit_s: float = 60.0

    def judge(self, samples: Sequence[Sample], own: set[int], launched_at: float | None,
              fault_at: float | None) -> str | None:
        last = samples[-1] if samples else None
        if last is None:
            return None
        if self.limits.real_campaigns:
            found = (real_campaign(last.campaigns, self.known_campaigns, own, self.priority)
                     or blind(samples, self.blind_limit_s))
            if found:
                return found
        return low_rate(samples, self.limits, launched_at, fault_at) or lagging(samples,
                                                                                 self.limits)
