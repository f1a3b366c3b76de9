"""What runs beside the drill's steps, on an event loop of its own (one thread, every task owned
and reaped at :meth:`Monitor.close`):

* the chaos collectors (the store observer, the carriers' submission logs) reading into the
  run's history on a period (``chaos.collect.Collecting``);
* the nemesis: each fault and heal of the drill goes through it (``inject``/``heal`` block the
  calling thread until done), so that the history holds them and the observer reads the store
  right before each fault;
* a sampler, once a second: the drill campaign's progress and deliveries per site, PostgreSQL's
  primary, standby and lag, the coordination leader, the running campaigns, the watchdog's
  events, the abort lever; it judges the stop conditions and updates the live view.

The drill's steps run in the main thread (chaostoolkit's runner); a stop sets the session's stop
signal, which its waits obey, and marks the chaostoolkit journal aborted so no further step
starts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from chaos.collect import Collecting, Collector
from chaos.history import History
from chaos.nemesis import Nemesis
from failover.drills.facts import Facts
from failover.drills.lever import Lever
from failover.drills.platform import Fault
from failover.drills.session import Mark, Session
from failover.drills.stops import Sample, StopJudge

log = logging.getLogger("tenir.drill")
EVENT_KINDS = ("watchdog.", "postgres.", "operator.")


class Display(Protocol):
    def update(self, monitor: Monitor) -> None: ...
    def close(self) -> None: ...


class Monitor:
    def __init__(self, session: Session, run_id: str, *, judge: StopJudge,
                 lever: Callable[[], Any] | None = None,
                 collectors: Callable[[History], Any] | None = None,
                 display: Display | None = None, period_s: float = 1.0,
                 collect_period_s: float = 0.5) -> None:
        """``lever``: an async context manager factory yielding a :class:`Lever` (a connected
        coordinator), or None; ``collectors(history)``: an async context manager yielding the
        collectors to run (all read just before each fault: the nemesis's barrier)."""
        self.session = session
        self.run_id = run_id
        self.judge = judge
        self.lever_factory = lever
        self.collectors_factory = collectors
        self.display = display
        self.period_s = period_s
        self.collect_period_s = collect_period_s
        self.history = History()
        self.samples: list[Sample] = []
        self.events: dict[int, dict[str, Any]] = {}
        self.lever_errors = 0
        self.collectors: Sequence[Collector] = ()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="drill-monitor",
                                       daemon=True)
        self._stop = asyncio.Event()
        self._task: concurrent.futures.Future[None] | None = None
        self._ready = threading.Event()
        self._nemesis: Nemesis | None = None
        self.facts: Facts | None = None

    # --- life --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start sampling; raise what stopped the monitor from starting (its collectors could
        not be opened): a drill never runs without its stop conditions."""
        self.thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._main(), self.loop)
        self._task.add_done_callback(lambda _: self._ready.set())
        if not self._ready.wait(30):
            raise RuntimeError("the drill's monitor did not start within 30 s")
        if self._task.done():
            self._task.result()  # re-raises why it ended
            raise RuntimeError("the drill's monitor ended as it started")

    def close(self) -> None:
        """Stop sampling, read the collectors a last time, reap every task."""
        if self._task is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            with contextlib.suppress(Exception):
                self._task.result(120)
            self._task = None
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        if not self.loop.is_running():
            self.loop.close()
        if self.display is not None:
            self.display.close()

    async def _main(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            lever: Lever | None = None
            if self.lever_factory is not None:
                try:
                    lever = await stack.enter_async_context(self.lever_factory())
                except Exception as exc:
                    log.warning("abort lever not readable: %s", exc)
            collectors: Sequence[Collector] = ()
            if self.collectors_factory is not None:
                collectors = await stack.enter_async_context(self.collectors_factory(
                    self.history))
            self.collectors = collectors
            collecting = await stack.enter_async_context(
                Collecting(collectors, self.collect_period_s)) if collectors else None
            # every collector read just before each fault, under Collecting's lock (as chaos's
            # runner does): a read racing the periodic one would record submissions twice
            self._nemesis = Nemesis(self.history, collecting.read_all if collecting else None)
            self._ready.set()
            while not self._stop.is_set():
                await self._sample(lever)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.period_s)
        self._ready.set()

    # --- the nemesis, from the drill's thread ------------------------------------------------
    def inject(self, name: str, fault: Fault, value: dict[str, Any]) -> None:
        assert self._nemesis is not None
        asyncio.run_coroutine_threadsafe(self._nemesis.inject(name, fault, value),
                                         self.loop).result()

    def heal(self, name: str, fault: Fault, value: dict[str, Any]) -> None:
        assert self._nemesis is not None
        asyncio.run_coroutine_threadsafe(self._nemesis.heal(name, fault, value),
                                         self.loop).result()

    # --- sampling ----------------------------------------------------------------------------
    async def _sample(self, lever: Lever | None) -> None:
        s = self.session
        sample = await asyncio.to_thread(self._read)
        self.samples.append(sample)
        if lever is not None:
            try:
                await lever.heartbeat(self.run_id)
                request = await lever.aborts(self.run_id)
            except Exception as exc:  # the lever unreadable for a while is not a stop
                self.lever_errors += 1
                log.warning("abort lever not readable: %s", exc)
                request = None
            if request is not None:
                self.stop(request.sentence(), "lever")
        if not s.healing and (s.injected or s.campaign_id is not None):
            reason = self.judge.judge(self.samples, s.own_campaigns, s.campaign_launched_at,
                                      s.fault_at)
            if reason is not None:
                self.stop(reason, "stop condition")
        if self.display is not None:
            self.display.update(self)

    def _read(self) -> Sample:
        s = self.session
        facts = s.facts()
        self.facts = facts
        done = state = None
        by_site: dict[str, int] = {}
        if s.campaign_id is not None:
            try:
                c = s.api.campaign(s.campaign_id)
                done = int(c["delivered"]) + int(c["acknowledged"]) + int(c["failed"])
                state = str(c["state"])
                by_site = {str(k): int(v) for k, v in (c.get("by_site") or {}).items()}
            except Exception as exc:  # a node not answering: a gap in the curve
                log.info("campaign progress not read: %s", exc)
        if len(self.samples) % 2 == 0:
            self._read_events()
        primary, sync = facts.primary, facts.sync_standby
        return Sample(at=s.clock(), done=done, delivered_by_site=by_site, state=state,
                      primary=primary.name if primary else None,
                      sync_standby=sync.name if sync else None,
                      lag_bytes=sync.lag_bytes if sync else None, leader=facts.leader,
                      campaigns=facts.campaigns)

    def _read_events(self) -> None:
        try:
            events = self.session.api.events(50)
        except Exception as exc:
            log.info("events not read: %s", exc)
            return
        for e in events:
            if str(e.get("kind", "")).startswith(EVENT_KINDS):
                self.events.setdefault(int(e["id"]), e)

    def record_launch(self, campaign: int, recipients: int, population: int | None,
                      scenario: str) -> None:
        """The drill's campaign in the history (the checkers judge the launched campaigns)."""
        def add() -> None:
            self.history.add("workload:drill", "invoke", "launch",
                             {"population": population, "scenario": scenario})
            self.history.add("workload:drill", "ok", "launch",
                             {"campaign": campaign, "recipients": recipients})

        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(add)

    def stop(self, reason: str, by: str) -> None:
        if self.session.stop.set(reason, by):
            log.warning("drill stopping: %s", reason)
            self.session.marks.append(Mark(self.session.clock(), "stop", reason))
            if self.session.journal is not None:  # chaostoolkit starts no further step
                self.session.journal["status"] = "aborted"

    def final_read(self, campaign: int) -> None:
        """The observer's last read of the drill campaign (what the checkers judge)."""
        observer = self.collectors[0] if self.collectors else None
        final = getattr(observer, "final", None)
        if final is None or not self.thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(final(campaign), self.loop).result(60)
        except Exception as exc:
            log.warning("final read of campaign %s failed: %s", campaign, exc)

    # --- what the live view and the record read ----------------------------------------------
    def watchdog_sentences(self, n: int = 3) -> list[str]:
        moves = [e for _, e in sorted(self.events.items()) if str(e.get("kind", ""))
                 .startswith("watchdog.")]
        return [str(e.get("sentence", "")) for e in moves[-n:]]

    def rates(self) -> dict[str, float]:
        """Deliveries per second per site over the last two samples that have them."""
        known = [x for x in self.samples if x.delivered_by_site]
        if len(known) < 2:
            return {}
        a, b = known[-2], known[-1]
        span = max(b.at - a.at, 1e-6)
        return {site: max(0.0, (b.delivered_by_site.get(site, 0)
                                - a.delivered_by_site.get(site, 0)) / span)
                for site in sorted(set(a.delivered_by_site) | set(b.delivered_by_site))}
