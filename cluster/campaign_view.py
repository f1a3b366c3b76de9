"""What the CLI says about a campaign (a ``GET /api/v1/campaigns/{id}`` answer): how many of its
recipients are done, for how long it has run and its average rate over that whole time, taken
from the campaign's own timestamps (``started_at``, ``completed_at``), never from the last poll.
Lines are short: the callers fit them to 80 columns (``cluster/textfit.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

Campaign = Mapping[str, Any]
FINAL_STATES = ("completed", "cancelled")


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def done(c: Campaign) -> int:
    """Recipients with a final outcome."""
    return max(0, int(c["recipients"]) - int(c["pending"]))


def elapsed_s(c: Campaign, now: datetime | None = None) -> float | None:
    """Seconds from ``started_at`` to ``completed_at`` (or to ``now`` while it runs)."""
    start = parse_time(c.get("started_at"))
    if start is None:
        return None
    end = parse_time(c.get("completed_at")) or now or datetime.now(UTC)
    return max(0.0, (end - start).total_seconds())


def average_rate(done_count: int, seconds: float | None) -> float | None:
    return done_count / seconds if seconds else None


def duration(seconds: float | None) -> str:
    """``12.1 s``, ``4 min 05 s``, ``1 h 02 min``."""
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def rate_text(rate: float | None) -> str:
    return "-/s" if rate is None else f"{rate:,.0f}/s"


def percent(c: Campaign) -> int:
    total = int(c["recipients"])
    return 100 if total == 0 else int(100 * done(c) / total)


def headline(c: Campaign, seconds: float | None) -> str:
    """One line: ``campaign 12 completed: 20,000/20,000 in 12.1 s, average 1,653/s``."""
    n, total = done(c), int(c["recipients"])
    when = "in" if c["state"] in FINAL_STATES else "after"
    return (f"campaign {c['id']} {c['state']}: {n:,}/{total:,} ({percent(c)}%) {when} "
            f"{duration(seconds)}, average {rate_text(average_rate(n, seconds))}")


def outcomes(c: Campaign) -> str:
    return (f"delivered {int(c['delivered']):,}, acknowledged {int(c['acknowledged']):,}, "
            f"failed {int(c['failed']):,}, pending {int(c['pending']):,}")


def by_site(c: Campaign) -> str:
    sites = c.get("by_site") or {}
    return ", ".join(f"{k} {int(v):,}" for k, v in sorted(sites.items())) or "none yet"


def summary_lines(c: Campaign, now: datetime | None = None) -> list[str]:
    """What ``campaign show``/``wait`` print: the headline, the outcomes, the sites."""
    return [headline(c, elapsed_s(c, now)), f"  {outcomes(c)}",
            f"  delivered by site: {by_site(c)}"]


def list_lines(items: Sequence[Campaign], now: datetime | None = None) -> list[str]:
    """``campaign list``: one row per campaign, within 80 columns."""
    rows = [f"{'id':>5} {'scenario':<12} {'state':<9} {'done':>19} {'time':>10} "
            f"{'average':>9} {'failed':>7}"]
    for c in items:
        seconds = elapsed_s(c, now)
        rate = rate_text(average_rate(done(c), seconds))
        scenario = str(c.get("scenario") or "?")
        scenario = scenario if len(scenario) <= 12 else scenario[:11] + "~"
        count = f"{done(c):,}/{int(c['recipients']):,}"
        rows.append(f"{c['id']:>5} {scenario:<12} {c['state']:<9} {count:>19} "
                    f"{duration(seconds):>10} {rate:>9} {int(c['failed']):>7,}")
    return rows


def campaign_json(c: Campaign, keys: Sequence[str], now: datetime | None = None) -> dict[str, Any]:
    """The ``--json`` form: ``keys`` of the answer, with ``seconds`` (started_at to completed_at,
    or to now) and ``average_per_s`` (done recipients per second over those seconds)."""
    seconds = elapsed_s(c, now)
    rate = average_rate(done(c), seconds)
    return {**{k: c.get(k) for k in keys},
            "seconds": None if seconds is None else round(seconds, 3),
            "average_per_s": None if rate is None else round(rate, 1)}
