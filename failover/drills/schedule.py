"""How often each drill kind must run, and which are overdue.

Intervals come from the inventory (``tenir_drill_intervals``: drill kind -> interval), written as
a word (``monthly``, ``quarterly``, ``half-yearly``, ``yearly``), a number and a unit (``90d``,
``12w``, ``36h``) or a number of seconds. A kind is *overdue* when no drill of that kind has
completed (passed or failed: an aborted drill did not test what it was to test) within its
interval; a kind never run is overdue too. The nodes compute it from the ledger
(``nodes/drill_schedule.py``) for ``/metrics`` and ``GET /api/v1/drills/schedule``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

DAY = 86400.0
WORDS = {"weekly": 7 * DAY, "monthly": 30 * DAY, "quarterly": 91 * DAY,
         "half-yearly": 182 * DAY, "yearly": 365 * DAY}
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])\Z")
COMPLETED = ("passed", "failed")


class IntervalError(ValueError):
    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"{key}: {problem}")


def parse_interval(value: Any, key: str = "interval") -> float:
    """Seconds of an interval; :class:`IntervalError` naming ``key`` otherwise."""
    if isinstance(value, bool):
        raise IntervalError(key, "must be an interval (quarterly, 90d, 12w...), not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip().lower() in WORDS:
        seconds = WORDS[value.strip().lower()]
    elif isinstance(value, str) and (m := _SPAN.match(value.strip().lower())):
        seconds = float(m.group(1)) * UNITS[m.group(2)]
    else:
        raise IntervalError(key, f"{value!r} is not an interval: {', '.join(WORDS)}, or a "
                            "number with s, m, h, d or w (90d)")
    if seconds < 3600:
        raise IntervalError(key, "must be at least an hour")
    return seconds


def parse_intervals(raw: Any, key: str = "tenir_drill_intervals") -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise IntervalError(key, "must be a mapping of drill kind to interval")
    out = {}
    for kind, value in raw.items():
        if not isinstance(kind, str) or not kind:
            raise IntervalError(key, "drill kinds must be non-empty strings")
        out[kind] = parse_interval(value, f"{key}.{kind}")
    return dict(sorted(out.items()))


def describe_interval(seconds: float) -> str:
    for word, s in WORDS.items():
        if abs(seconds - s) < 1:
            return word
    if seconds % DAY == 0:
        return f"every {int(seconds // DAY)} d"
    return f"every {seconds / 3600:g} h"


@dataclass(frozen=True)
class LastRun:
    at: datetime
    outcome: str  # passed | failed | aborted
    record_id: str


@dataclass(frozen=True)
class DueState:
    kind: str
    interval_s: float
    last_run: LastRun | None  # the latest, whatever its outcome
    last_completed: LastRun | None  # the latest that passed or failed
    due: datetime | None  # when the next one is due (None: never run: due now)
    overdue: bool

    def to_json(self) -> dict[str, Any]:
        def run(r: LastRun | None) -> dict[str, Any] | None:
            return None if r is None else {"at": r.at.isoformat(), "outcome": r.outcome,
                                           "id": r.record_id}

        return {"drill": self.kind, "interval_s": self.interval_s,
                "interval": describe_interval(self.interval_s),
                "last_run": run(self.last_run), "last_completed": run(self.last_completed),
                "due": None if self.due is None else self.due.isoformat(),
                "overdue": self.overdue}


def due_state(kind: str, interval_s: float, last_run: LastRun | None,
              last_completed: LastRun | None, now: datetime) -> DueState:
    if last_completed is None:
        return DueState(kind, interval_s, last_run, None, None, True)
    due = last_completed.at + timedelta(seconds=interval_s)
    return DueState(kind, interval_s, last_run, last_completed, due, now >= due)


def schedule_sentence(states: list[DueState]) -> str:
    overdue = [s for s in states if s.overdue]
    if not states:
        return "no drill interval in the inventory (tenir_drill_intervals)"
    if not overdue:
        return f"{len(states)} drill kinds, none overdue"
    names = ", ".join(s.kind for s in overdue)
    return f"{len(overdue)} of {len(states)} drill kinds overdue: {names}"
