"""Scenarios as data: ``chaos/scenarios/*.yaml``, validated at load; every error names the file
and the key (``chaos/scenarios/node-kill.yaml: faults[0].params.node: required``).

A scenario::

    name: node-kill                 # the file's name without .yaml
    description: kill -9 of an alert node mid-campaign
    faults:                         # one step, or several (a double fault)
      - name: kill_node             # a fault of FAULTS, with its parameters
        params: {node: paris-node1}
        after_s: 0                  # from the moment (step 1) or from the previous step
    moments: [start, middle, end]   # which moments the runner may inject at
    durations: {fault_s: 20, settle_s: 5, timeout_s: 300}
    campaign: {population: 20000, scenario: demo, batch_size: 100}
    invariants: [recipients, rpo, duplicates, fencing, watchdog, progress]
    tolerances: {progress_bound_s: 60, rpo_window_s: 0.5}
    backends: [etcd, zookeeper]     # optional; default both

The moment is a parameter the runner varies (``Scenario.at(moment)``): ``start`` (right after
the launch), ``middle`` (half the recipients have a final outcome), ``end`` (90 %), or
``during-pg-failover`` (while Patroni is promoting the other site after a primary kill).
Sites in parameters are a site name or a role resolved at run time: ``primary`` (the site of
the PostgreSQL primary), ``standby``, ``any``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import yaml

SCENARIO_DIR: Final = Path(__file__).resolve().parent / "scenarios"
MOMENTS: Final = ("start", "early", "middle", "end", "during-pg-failover")
INVARIANTS: Final = ("recipients", "rpo", "duplicates", "fencing", "watchdog", "progress")
BACKENDS: Final = ("etcd", "zookeeper")
CHANNELS: Final = ("sms", "email", "voice", "all")
SITE_ROLES: Final = ("primary", "standby", "any")

# Each parameter: (kind, required); kinds: str, site, number, fraction, bool, one of a tuple.
_SITE = ("site", True)
FAULTS: Final[dict[str, dict[str, tuple[Any, bool]]]] = {
    "kill_node": {"node": ("str", True)},
    "freeze_node": {"node": ("str", True), "freeze_s": ("number", True)},
    "site_power_cut": {"site": _SITE, "silence_s": ("number", True),
                       "power_back_after_s": ("number", False)},
    "isolate_site": {"site": _SITE},
    "cut_link": {"site_a": _SITE, "site_b": _SITE},
    "witness_loss": {"site": ("site", False)},
    "kill_postmaster": {"target": (("primary", "standby"), True)},
    "kill_patroni": {"target": (("primary", "standby"), True)},
    "kill_coordination_leader": {},
    "kill_coordination_member": {"which": (("follower", "witness"), True)},
    "kill_haproxy": {"site": _SITE},
    "carrier": {"site": _SITE, "channel": (CHANNELS, True),
                "mode": (("refuse", "timeout", "throttle", "slow", "drop_receipts"), True),
                "delay_ms": ("number", False), "throttle_per_s": ("number", False),
                "refuse_temporary": ("bool", False)},
    "degraded_link": {"site_a": _SITE, "site_b": _SITE, "rtt_ms": ("number", True),
                      "loss": ("fraction", False)},
}
TOLERANCES: Final[dict[str, str]] = {
    "progress_bound_s": "number", "rpo_window_s": "number", "duplicates_extra": "number",
    "watchdog_margin_s": "number", "expect_refusals": "bool", "rpo_exposure": "bool",
}
_TOP: Final = {"name", "description", "faults", "moments", "durations", "campaign",
               "invariants", "tolerances", "backends"}
_DURATIONS: Final = {"fault_s", "settle_s", "timeout_s"}
_CAMPAIGN: Final = {"population", "scenario", "batch_size"}


class ScenarioError(ValueError):
    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        super().__init__(f"{source}: {key}: {problem}")


@dataclass(frozen=True)
class FaultStep:
    name: str
    params: Mapping[str, Any]
    after_s: float = 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    faults: tuple[FaultStep, ...]
    moments: tuple[str, ...]
    fault_s: float
    settle_s: float
    timeout_s: float
    population: int
    campaign_scenario: str
    batch_size: int
    invariants: tuple[str, ...]
    tolerances: Mapping[str, Any] = field(default_factory=dict)
    backends: tuple[str, ...] = BACKENDS
    moment: str | None = None  # set by at()
    source: str = ""

    def at(self, moment: str) -> Scenario:
        """This scenario injected at ``moment`` (one of its ``moments``)."""
        if moment not in self.moments:
            raise ScenarioError(self.source, "moments",
                                f"{moment!r} is not one of {', '.join(self.moments)}")
        return replace(self, moment=moment)


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> ScenarioError:
        return ScenarioError(self.source, key, problem)

    def mapping(self, value: Any, key: str, known: set[str] | frozenset[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, "must be a mapping")
        for k in value:
            if k not in known:
                raise self.fail(f"{key}.{k}" if key else str(k),
                                f"unknown key (known: {', '.join(sorted(known))})")
        return value

    def number(self, value: Any, key: str, *, low: float = 0.0,
               integer: bool = False) -> float:
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok or not math.isfinite(value) or value < low:
            raise self.fail(key, f"must be {'an integer' if integer else 'a number'} >= {low:g}")
        return float(value)

    def choices(self, value: Any, key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"must be a non-empty list of {', '.join(allowed)}")
        for i, v in enumerate(value):
            if v not in allowed:
                raise self.fail(f"{key}[{i}]", f"{v!r} is not one of {', '.join(allowed)}")
        if len(set(value)) != len(value):
            raise self.fail(key, "lists an entry twice")
        return tuple(value)

    def param(self, value: Any, key: str, kind: Any) -> Any:
        if isinstance(kind, tuple):
            if value not in kind:
                raise self.fail(key, f"must be one of {', '.join(kind)}")
        elif kind in ("str", "site"):
            if not isinstance(value, str) or not value.strip():
                raise self.fail(key, "must be a non-empty string"
                                + (f" (a site or {', '.join(SITE_ROLES)})" if kind == "site"
                                   else ""))
        elif kind == "number":
            self.number(value, key)
        elif kind == "fraction":
            if self.number(value, key) > 1:
                raise self.fail(key, "must be between 0 and 1")
        elif kind == "bool" and not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def fault(self, raw: Any, key: str) -> FaultStep:
        step = self.mapping(raw, key, {"name", "params", "after_s"})
        name = step.get("name")
        if name not in FAULTS:
            raise self.fail(f"{key}.name", f"{name!r} is not a fault "
                            f"(known: {', '.join(sorted(FAULTS))})")
        schema = FAULTS[name]
        params = self.mapping(step.get("params", {}) or {}, f"{key}.params", set(schema))
        for pname, (kind, required) in schema.items():
            if pname not in params:
                if required:
                    raise self.fail(f"{key}.params.{pname}", "required")
                continue
            self.param(params[pname], f"{key}.params.{pname}", kind)
        after = self.number(step.get("after_s", 0), f"{key}.after_s")
        return FaultStep(name, dict(params), after)


def parse_scenario(data: Any, source: str, expected_name: str | None = None) -> Scenario:
    r = _Reader(source)
    top = r.mapping(data, "", _TOP)
    for key in ("name", "faults", "moments", "durations", "campaign", "invariants"):
        if key not in top:
            raise r.fail(key, "required")
    name = top["name"]
    if not isinstance(name, str) or not name:
        raise r.fail("name", "must be a non-empty string")
    if expected_name is not None and name != expected_name:
        raise r.fail("name", f"must be the file's name {expected_name!r}")
    if not isinstance(top["faults"], list) or not top["faults"]:
        raise r.fail("faults", "must be a non-empty list of fault steps")
    faults = tuple(r.fault(f, f"faults[{i}]") for i, f in enumerate(top["faults"]))
    durations = r.mapping(top["durations"], "durations", _DURATIONS)
    for key in _DURATIONS:
        if key not in durations:
            raise r.fail(f"durations.{key}", "required")
        r.number(durations[key], f"durations.{key}")
    if durations["timeout_s"] <= 0:
        raise r.fail("durations.timeout_s", "must be > 0")
    campaign = r.mapping(top["campaign"], "campaign", _CAMPAIGN)
    for key in _CAMPAIGN:
        if key not in campaign:
            raise r.fail(f"campaign.{key}", "required")
    population = int(r.number(campaign["population"], "campaign.population", low=1,
                              integer=True))
    batch_size = int(r.number(campaign["batch_size"], "campaign.batch_size", low=1,
                              integer=True))
    r.param(campaign["scenario"], "campaign.scenario", "str")
    tolerances = r.mapping(top.get("tolerances", {}) or {}, "tolerances", set(TOLERANCES))
    for key, kind in TOLERANCES.items():
        if key in tolerances:
            r.param(tolerances[key], f"tolerances.{key}", kind)
    invariants = r.choices(top["invariants"], "invariants", INVARIANTS)
    if "progress" in invariants and "progress_bound_s" not in tolerances:
        raise r.fail("tolerances.progress_bound_s", "required by the progress invariant")
    description = top.get("description", "")
    if not isinstance(description, str):
        raise r.fail("description", "must be a string")
    return Scenario(
        name=name, description=description, faults=faults,
        moments=r.choices(top["moments"], "moments", MOMENTS),
        fault_s=float(durations["fault_s"]), settle_s=float(durations["settle_s"]),
        timeout_s=float(durations["timeout_s"]), population=population,
        campaign_scenario=campaign["scenario"], batch_size=batch_size, invariants=invariants,
        tolerances=dict(tolerances),
        backends=r.choices(top.get("backends", list(BACKENDS)), "backends", BACKENDS),
        source=source)


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(str(p), "(file)", str(exc)) from exc
    return parse_scenario(data, str(p), expected_name=p.stem)


def load_all(directory: str | Path = SCENARIO_DIR) -> list[Scenario]:
    """Every ``*.yaml`` of ``directory``, sorted by name; refuses an empty directory."""
    paths = sorted(Path(directory).glob("*.yaml"))
    if not paths:
        raise ScenarioError(str(directory), "(directory)", "no scenario (*.yaml)")
    return [load_scenario(p) for p in paths]
