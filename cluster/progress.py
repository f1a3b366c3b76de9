"""A campaign's progress while the CLI follows it.

On a terminal, a bar redrawn in place by rich's :class:`~rich.progress.Progress` (no hand-drawn
escape codes), as wide as the terminal and at most 80 columns. Anywhere else (a pipe, a log,
``TERM=dumb``), plain lines, one every ``every_s`` seconds (10 by default): no carriage return, no
escape code. Both show the time since the campaign started and the average rate over that whole
time (``cluster/campaign_view.py``); what the command prints at the end is the caller's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.text import Text

from cluster.campaign_view import (
    FINAL_STATES,
    Campaign,
    average_rate,
    by_site,
    done,
    duration,
    elapsed_s,
    headline,
    rate_text,
)
from cluster.textfit import MAX_WIDTH, output_width

PLAIN_EVERY_S = 10.0


class ProgressDisplay(Protocol):
    def update(self, c: Campaign, seconds: float | None) -> None: ...
    def close(self) -> None: ...


class CampaignClock:
    """Seconds a followed campaign has run: anchored once on its ``started_at`` (the nodes'
    clock), then counted on this machine's monotonic clock, so that a skew between the two does
    not make it jump; ``completed_at - started_at`` once it has ended."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.monotonic = monotonic
        self.now = now
        self.anchor: tuple[float, float] | None = None

    def seconds(self, c: Campaign) -> float | None:
        if c.get("completed_at"):
            return elapsed_s(c)
        if self.anchor is None:
            base = elapsed_s(c, self.now())
            if base is None:
                return None
            self.anchor = (base, self.monotonic())
        base, t0 = self.anchor
        return base + self.monotonic() - t0


class PlainLines:
    """Progress as plain lines: the first update, then at most one line every ``every_s``
    seconds while the campaign runs (its final state is the caller's to print)."""

    def __init__(self, stream: TextIO, every_s: float = PLAIN_EVERY_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.every_s = every_s
        self.monotonic = monotonic
        self.last: float | None = None

    def update(self, c: Campaign, seconds: float | None) -> None:
        if c["state"] in FINAL_STATES:
            return
        now = self.monotonic()
        if self.last is not None and now - self.last < self.every_s:
            return
        self.last = now
        print(headline(c, seconds)[:MAX_WIDTH], file=self.stream, flush=True)

    def close(self) -> None:
        return None


class _CampaignProgress(Progress):
    """A progress bar with lines of detail under it."""

    def __init__(self, *args: Any, below: Callable[[], Iterable[str]], **kwargs: Any) -> None:
        self.below = below
        super().__init__(*args, **kwargs)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for line in self.below():
            yield Text(line, no_wrap=True, overflow="ellipsis")


class LiveBar:
    """The bar on a terminal: ``campaign 12 ━━━━━━━━━━━━ 62% 12,345/20,000``, then
    ``running for 7.2 s, average 1,650/s; failed 345, acknowledged 0`` and the count per site.
    Redrawn on each update (no refresh thread); left on screen at the end."""

    def __init__(self, console: Console) -> None:
        self.lines: list[str] = []
        self.progress = _CampaignProgress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=None),
            TextColumn("{task.percentage:>3.0f}%", markup=False),
            TextColumn("{task.fields[count]}", markup=False),
            console=console, auto_refresh=False, expand=True, transient=False,
            redirect_stdout=False, redirect_stderr=False, below=lambda: self.lines)
        self.task: TaskID | None = None

    def update(self, c: Campaign, seconds: float | None) -> None:
        n, total = done(c), int(c["recipients"])
        rate = rate_text(average_rate(n, seconds))
        when = "in" if c["state"] in FINAL_STATES else "for"
        self.lines = [f"{c['state']} {when} {duration(seconds)}, average {rate}; failed "
                      f"{int(c['failed']):,}, acknowledged {int(c['acknowledged']):,}",
                      f"delivered by site: {by_site(c)}"]
        count = f"{n:,}/{total:,}"
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(f"campaign {c['id']}", total=max(total, 1),
                                               completed=n, count=count)
        else:
            self.progress.update(self.task, total=max(total, 1), completed=n, count=count)
        self.progress.refresh()

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()


def is_live_terminal(stream: TextIO) -> bool:
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM", "") not in ("dumb", "unknown")


def open_display(stream: TextIO) -> ProgressDisplay:
    """The bar if ``stream`` is a terminal, else plain lines."""
    if is_live_terminal(stream):
        return LiveBar(Console(file=stream, force_terminal=True, width=output_width(stream),
                               highlight=False))
    return PlainLines(stream)
