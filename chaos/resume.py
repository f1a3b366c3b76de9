"""Resume time after a fault, from the history: how long until a surviving site's carrier
received a submission, and until a surviving site's node had an outcome write accepted.

The fault is the run's first ``fault`` invoke. Surviving sites: the datacenter sites no fault of
the run names (``value.site`` or ``value.sites`` of a cut link's side that lost PostgreSQL is
``site``); when every datacenter site is named (a double fault), all of them, and the time then
includes the outage. Submissions come from the carrier log (``submit``, the simulator's clock);
accepted writes from the claim log (``claim`` ops of kind ``write``, the database's clock, to the
millisecond), else from the observer's ``outcome`` ops (the snapshot's time, to its period).
A write counts once the fault is in place (its ``ok``): a power cut takes most of a second to
kill a site's machines, and a write the doomed primary commits meanwhile is no resumption (the
lab measured 0.02 s where PostgreSQL then answered nobody for 20 s). Both times are counted
from the invoke.

The first submission after a fault says little when the survivors were sending at that moment:
they finish what they hold and may stop a second later (a PostgreSQL failover, before the
journal). :func:`longest_pause` says how long the survivors' carriers then received nothing,
and when that pause ended: the time a person waiting for an alert feels.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chaos.history import History


@dataclass(frozen=True)
class Resume:
    submit_s: float | None  # first submission at a surviving site's carrier after the fault
    outcome_s: float | None  # first outcome write of a surviving site's node accepted after it
    sites: tuple[str, ...]  # the surviving sites

    def as_dict(self) -> dict[str, Any]:
        return {"submit_s": self.submit_s, "outcome_s": self.outcome_s, "sites": list(self.sites)}

    def short(self) -> str:
        """``0.1/4.2`` (submission/outcome, seconds), ``-`` for what never came."""
        def one(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"
        return f"{one(self.submit_s)}/{one(self.outcome_s)}"


@dataclass(frozen=True)
class Pause:
    seconds: float  # the longest stretch without a submission
    ended_s: float  # when it ended, from the start (when sending resumed after it)


def longest_pause(times: Iterable[float], start: float, end: float) -> Pause:
    """Pure: the longest stretch of [start, end] without a time of ``times`` (submissions, one
    clock), from ``start`` to the first submission, between two, or from the last to ``end``
    (then ``ended_s`` is ``end - start``: sending had not resumed)."""
    inside = sorted(t for t in times if start <= t <= end)
    edges = [start, *inside, end]
    best = Pause(0.0, 0.0)
    for a, b in itertools.pairwise(edges):
        if b - a > best.seconds:
            best = Pause(b - a, b - start)
    return best


def failed_sites(history: History) -> set[str]:
    return {str(op.value["site"]) for op in history.of("fault", "invoke") if op.value.get("site")}


def resume(history: History, datacenter_sites: Iterable[str]) -> Resume | None:
    """None without a fault."""
    faults = history.of("fault", "invoke")
    if not faults:
        return None
    first = min(faults, key=lambda op: op.at)
    at = first.at
    in_place = min((op.at for op in history.of("fault", "ok")
                    if op.at >= at and op.value.get("name") == first.value.get("name")),
                   default=at)
    every = sorted(datacenter_sites)
    surviving = tuple(s for s in every if s not in failed_sites(history)) or tuple(every)
    submits = [op.at for op in history.of("submit", "ok")
               if op.at > at and op.value.get("site") in surviving]
    writes = [op.at for op in history.of("claim", "ok")
              if op.value.get("kind") == "write" and op.at > in_place
              and op.value.get("site") in surviving]
    if not writes:
        writes = [op.at for op in history.of("outcome", "ok")
                  if op.at > in_place and op.value.get("site") in surviving]
    return Resume(min(submits) - at if submits else None,
                  min(writes) - at if writes else None, surviving)
