"""One drill run as its steps see it: the cluster it reads, the platform its faults act through,
the API its test campaign goes through, the sites its roles name, what it injected (so that
every heal knows what to undo), and the stop signal the stop conditions and the abort lever set.

chaostoolkit calls the extension's functions (``activities.py``) by name with the experiment's
arguments only; they reach the run through :func:`current`, bound by the runner for the time of
the run (:func:`bound`). One drill runs per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from failover.drills.catalog import Drill
from failover.drills.facts import ClusterReader, DrillApi, Facts, Sites
from failover.drills.platform import Fault, Platform
from failover.drills.preflight import Check


class Injector(Protocol):
    """Injects and heals a fault, recording both in the run's history (the monitor's nemesis)."""

    def inject(self, name: str, fault: Fault, value: dict[str, Any]) -> None: ...
    def heal(self, name: str, fault: Fault, value: dict[str, Any]) -> None: ...


class DirectInjector:
    """No history (a dry run, or a test without a monitor)."""

    def inject(self, name: str, fault: Fault, value: dict[str, Any]) -> None:
        fault.inject()

    def heal(self, name: str, fault: Fault, value: dict[str, Any]) -> None:
        fault.heal()


@dataclass(frozen=True)
class Roles:
    """The sites the drill's roles name, fixed when it starts (after a failover "primary" still
    names the site that held the primary at the start)."""

    primary: str
    standby: str
    witness: str

    def site(self, role: str) -> str:
        if role not in ("primary", "standby", "witness"):
            raise ValueError(f"unknown role {role!r}")
        return str(getattr(self, role))

    def to_json(self) -> dict[str, str]:
        return {"primary": self.primary, "standby": self.standby, "witness": self.witness}


@dataclass
class Injected:
    name: str  # the activity that injected it
    fault: Fault
    value: dict[str, Any]
    at: float  # wall time
    healed: bool = False


@dataclass
class Mark:
    at: float  # wall time
    kind: str  # fault | heal | step | stop
    label: str


class Stopped(Exception):
    """A wait ended because the drill is stopping (a stop condition or the abort lever)."""


@dataclass
class StopSignal:
    event: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None
    by: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, reason: str, by: str) -> bool:
        """True if this call stopped the drill (the first reason wins)."""
        with self.lock:
            if self.reason is not None:
                return False
            self.reason, self.by = reason, by
        self.event.set()
        return True

    @property
    def stopping(self) -> bool:
        return self.event.is_set()


@dataclass
class Settings:
    """What the inventory says about drills (``settings.py``), resolved for this drill."""

    targets: dict[str, float | None]
    real_campaign_priority: int = 5
    max_lag_bytes: int = 0
    wait_timeout_s: float = 600.0  # each wait of the campaign (a step's timeout_s overrides)
    heal_timeout_s: float = 600.0  # the wait until the cluster is whole again
    poll_s: float = 1.0
    # Patroni publishes positions each loop_wait: a lag seen once may be stale, so a lag alone
    # is read again for this long before the precondition says no.
    lag_settle_s: float = 6.0


class Session:
    def __init__(self, drill: Drill, *, sites: Sites, roles: Roles, cluster: ClusterReader,
                 platform: Platform, api: DrillApi, settings: Settings, dry: bool = False,
                 injector: Injector | None = None, say: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.drill = drill
        self.sites = sites
        self.roles = roles
        self.cluster = cluster
        self.platform = platform
        self.api = api
        self.settings = settings
        self.dry = dry
        self.injector: Injector = injector or DirectInjector()
        self.say = say
        self.clock = clock
        self.sleep = sleep
        self.stop = StopSignal()
        self.injected: list[Injected] = []
        self.marks: list[Mark] = []
        self.checks: dict[str, Check] = {}
        self.campaign_id: int | None = None
        self.campaign_launched_at: float | None = None
        self.own_campaigns: set[int] = set()
        self.done_at_fault: int | None = None  # the campaign's final outcomes when it began
        self.step: str = ""
        self.step_started: float | None = None  # monotonic
        self.failed_step: str | None = None
        self.journal: dict[str, Any] | None = None  # chaostoolkit's, while it runs
        self.monitor: Any = None
        self.healing = False
        self._facts: tuple[float, Facts] | None = None
        self.heal_failures: list[str] = []

    # --- reads ----------------------------------------------------------------------------------
    def facts(self, max_age_s: float = 0.0) -> Facts:
        now = time.monotonic()
        if self._facts is None or now - self._facts[0] > max_age_s:
            self._facts = (now, self.cluster.facts())
        return self._facts[1]

    def site(self, role: str) -> str:
        return self.roles.site(role)

    # --- waiting --------------------------------------------------------------------------------
    def wait(self, what: str, probe: Callable[[], tuple[bool, Any]], timeout_s: float,
             *, stoppable: bool = True) -> Any:
        """Call ``probe`` every ``poll_s`` until it returns (True, value); raises
        :class:`Stopped` when the drill stops (unless ``stoppable`` is False: heals finish),
        ``TimeoutError`` naming ``what`` at the timeout."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while True:
            if stoppable and self.stop.stopping:
                raise Stopped(f"stopped while waiting for {what}: {self.stop.reason}")
            done, last = probe()
            if done:
                return last
            if time.monotonic() >= deadline:
                raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}; last "
                                   f"seen: {last}")
            if stoppable:
                self.stop.event.wait(self.settings.poll_s)
            else:
                self.sleep(self.settings.poll_s)

    # --- faults ---------------------------------------------------------------------------------
    def inject(self, name: str, fault: Fault, value: dict[str, Any]) -> None:
        if self.stop.stopping:
            raise Stopped(f"not injecting {fault.describe()}: {self.stop.reason}")
        at = self.clock()
        self.injector.inject(name, fault, value)
        self.injected.append(Injected(name, fault, value, at))
        self.marks.append(Mark(at, "fault", fault.describe()))

    def heal_last(self) -> str:
        pending = [i for i in self.injected if not i.healed]
        if not pending:
            return "nothing to heal"
        return self._heal(pending[-1])

    def heal_all(self) -> str:
        pending = [i for i in reversed(self.injected) if not i.healed]
        if not pending:
            return "nothing left to heal"
        said = []
        for item in pending:
            try:
                said.append(self._heal(item))
            except Exception as exc:  # every heal is tried, whatever the one before did
                problem = f"could NOT heal {item.fault.describe()}: {exc}"
                self.heal_failures.append(problem)
                said.append(problem)
        return "; ".join(said)

    def _heal(self, item: Injected) -> str:
        self.healing = True
        self.injector.heal(item.name, item.fault, item.value)
        item.healed = True
        self.marks.append(Mark(self.clock(), "heal", f"healed: {item.fault.describe()}"))
        return f"healed: {item.fault.describe()}"

    @property
    def fault_at(self) -> float | None:
        return self.injected[0].at if self.injected else None

    @property
    def unhealed(self) -> list[str]:
        return [i.fault.describe() for i in self.injected if not i.healed]


_current: Session | None = None
_lock = threading.Lock()


def current() -> Session:
    if _current is None:
        raise RuntimeError("no drill is running in this process (tenir drill run binds one)")
    return _current


@contextmanager
def bound(session: Session) -> Iterator[Session]:
    global _current
    with _lock:
        if _current is not None:
            raise RuntimeError("a drill is already running in this process")
        _current = session
    try:
        yield session
    finally:
        with _lock:
            _current = None
