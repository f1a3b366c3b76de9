"""The drill as it runs, in the terminal: the step and its number, the time since the start,
each check's state, the drill campaign's progress and deliveries per second per site, the
PostgreSQL primary, the watchdog's latest sentences, and a stop when there is one. On a
terminal, a block redrawn in place by rich (at most 80 columns); anywhere else, plain lines: one
per step and one status line every ``every_s`` seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from cluster.progress import is_live_terminal
from cluster.textfit import MAX_WIDTH, fit, output_width
from failover.drills.session import Session

if TYPE_CHECKING:
    from failover.drills.monitor import Monitor


def _fmt_s(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m:d}:{s:02d}"


def status_lines(session: Session, monitor: Monitor, elapsed: float) -> list[str]:
    steps = [a["name"] for a in session.drill.activities("method")]
    number = steps.index(session.step) + 1 if session.step in steps else None
    where = f"step {number}/{len(steps)}" if number else "checks/rollbacks"
    out = [f"drill {session.drill.kind}  {_fmt_s(elapsed)}  {where}: {session.step or '...'}"]
    checks = "  ".join(f"{name} {'ok' if c.ok else 'FAIL'}"
                       for name, c in session.checks.items())
    if checks:
        out.append(f"checks: {checks}")
    last = next((s for s in reversed(monitor.samples) if s.done is not None), None)
    rates = monitor.rates()
    if session.campaign_id is not None:
        done = "?" if last is None else f"{last.done:,}"
        out.append(f"campaign {session.campaign_id}: {done} done"
                   + (f" ({last.state})" if last and last.state else ""))
    if rates:
        out.append("deliveries/s: " + ", ".join(f"{site} {rate:,.0f}"
                                                for site, rate in rates.items()))
    sample = monitor.samples[-1] if monitor.samples else None
    if sample is not None:
        out.append(f"postgres: primary {sample.primary or 'NONE'}, standby "
                   f"{sample.sync_standby or 'none'}; coordination leader "
                   f"{sample.leader or 'none'}")
    for sentence in monitor.watchdog_sentences(2):
        out.append(f"watchdog: {sentence}")
    if session.stop.reason:
        out.append(f"STOPPING: {session.stop.reason}")
    return out


class LiveView:
    """The block on a terminal, redrawn on each sample; ``say`` lines go above it."""

    def __init__(self, session: Session, stream: TextIO,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.session = session
        self.width = min(MAX_WIDTH, output_width(stream))
        self.console = Console(file=stream, force_terminal=True, width=self.width,
                               highlight=False)
        self.live = Live(console=self.console, auto_refresh=False, transient=False,
                         redirect_stdout=False, redirect_stderr=False)
        self.monotonic = monotonic
        self.started = monotonic()
        self.lock = threading.Lock()
        self.running = False

    def say(self, text: str) -> None:
        with self.lock:
            for line in fit([text], self.width):
                self.console.print(Text(line, no_wrap=True, overflow="ellipsis"))

    def update(self, monitor: Monitor) -> None:
        lines = status_lines(self.session, monitor, self.monotonic() - self.started)
        with self.lock:
            if not self.running:
                self.live.start()
                self.running = True
            self.live.update(Group(*(Text(x, no_wrap=True, overflow="ellipsis")
                                     for x in lines)), refresh=True)

    def close(self) -> None:
        with self.lock:
            if self.running:
                self.live.stop()
                self.running = False


class PlainView:
    """Plain lines: the step when it changes, a status line every ``every_s`` seconds."""

    def __init__(self, session: Session, stream: TextIO, every_s: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.session = session
        self.stream = stream
        self.every_s = every_s
        self.monotonic = monotonic
        self.started = monotonic()
        self.last_line: float | None = None
        self.last_step = ""
        self.last_stop: str | None = None
        self.lock = threading.Lock()

    def say(self, text: str) -> None:
        with self.lock:
            for line in fit([text]):
                print(line, file=self.stream, flush=True)

    def update(self, monitor: Monitor) -> None:
        now = self.monotonic()
        elapsed = now - self.started
        lines = status_lines(self.session, monitor, elapsed)
        out = []
        if self.session.step != self.last_step:
            self.last_step = self.session.step
            out.append(lines[0])
        if self.session.stop.reason and self.session.stop.reason != self.last_stop:
            self.last_stop = self.session.stop.reason
            out.append(f"STOPPING: {self.last_stop}")
        if self.last_line is None or now - self.last_line >= self.every_s:
            self.last_line = now
            out += [f"{_fmt_s(elapsed)} {line}" for line in lines[1:]
                    if not line.startswith("STOPPING")]
        for line in out:
            self.say(line)

    def close(self) -> None:
        return None


def open_view(session: Session, stream: TextIO) -> LiveView | PlainView:
    if is_live_terminal(stream):
        return LiveView(session, stream)
    return PlainView(session, stream)
