"""Drills as data: ``chaos/drills/<kind>.yaml``, each a chaostoolkit experiment (title,
description, steady-state hypothesis, method, rollbacks) whose activities are tenir's extension
(``failover.drills.activities``), with tenir's own part in the experiment's ``extensions``::

    extensions:
      - name: tenir
        kind: lose-primary-site          # the file's name: the schedule's and targets' key
        scope: power cut of every machine of the site holding the PostgreSQL primary
        sites: [primary]                 # sites (or roles: primary, standby, witness) touched
        campaign: {scenario: demo, population: 40000, batch_size: 100}
        stop: {min_rate_per_s: 20, min_rate_for_s: 60, max_lag_bytes: 67108864}
        invariants: [recipients, rpo, duplicates]

A drill is validated at load by chaostoolkit (``ensure_experiment_is_valid``: every activity's
provider imported and its arguments bound to the function) and here: every provider is tenir's
extension module, the method holds at least one fault and a heal, the rollbacks heal, and the
tenir block is complete. Every error names the file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from chaos.scenario import INVARIANTS

DRILL_DIR: Final = Path(__file__).resolve().parents[2] / "chaos" / "drills"
EXTENSION_MODULE: Final = "failover.drills.activities"
ROLES: Final = ("primary", "standby", "witness")
CAMPAIGN_KEYS: Final = frozenset({"scenario", "population", "group", "batch_size"})
STOP_KEYS: Final = frozenset({"min_rate_per_s", "min_rate_for_s", "max_lag_bytes",
                              "max_lag_for_s", "real_campaigns"})
TENIR_KEYS: Final = frozenset({"name", "kind", "scope", "sites", "campaign", "stop",
                               "invariants"})
DRILL_INVARIANTS: Final = tuple(i for i in INVARIANTS if i in ("recipients", "rpo",
                                                               "duplicates", "progress"))


class DrillError(ValueError):
    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        super().__init__(f"{source}: {key}: {problem}")


@dataclass(frozen=True)
class StopLimits:
    """The drill's stop conditions (``failover/drills/stops.py``)."""

    min_rate_per_s: float = 0.0  # the drill's campaign delivering under this...
    min_rate_for_s: float = 60.0  # ...for this long stops the drill (0 rate: not checked)
    max_lag_bytes: int | None = None  # the synchronous standby lagging more than this...
    max_lag_for_s: float = 10.0  # ...for this long stops it
    real_campaigns: bool = True  # a real campaign launched meanwhile stops it


@dataclass(frozen=True)
class CampaignSpec:
    scenario: str
    population: int | None = None
    group: str | None = None
    batch_size: int = 100

    def describe(self) -> str:
        who = (f"{self.population:,} generated test recipients" if self.population is not None
               else f"the test group {self.group}")
        return f"{who}, scenario {self.scenario}"


@dataclass(frozen=True)
class Drill:
    kind: str
    title: str
    description: str
    scope: str
    sites: tuple[str, ...]
    campaign: CampaignSpec
    stop: StopLimits
    invariants: tuple[str, ...]
    experiment: Mapping[str, Any] = field(repr=False)
    source: str = ""

    def activities(self, part: str) -> list[dict[str, Any]]:
        """The activities of ``hypothesis``, ``method`` or ``rollbacks``."""
        if part == "hypothesis":
            return list(self.experiment.get("steady-state-hypothesis", {}).get("probes", []))
        return list(self.experiment.get(part, []))


def _fail(source: str, key: str, problem: str) -> DrillError:
    return DrillError(source, key, problem)


def _number(value: Any, source: str, key: str, *, integer: bool = False,
            low: float = 0.0) -> float:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value < low:
        raise _fail(source, key, f"must be {'an integer' if integer else 'a number'} >= {low:g}")
    return float(value)


def _mapping(raw: Any, source: str, key: str, known: frozenset[str],
             what: str = "a mapping") -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise _fail(source, key, f"must be {what}")
    for k in raw:
        if k not in known:
            raise _fail(source, f"{key}.{k}", f"unknown key (known: {', '.join(sorted(known))})")
    return raw


def parse_campaign(raw: Any, source: str, key: str) -> CampaignSpec:
    raw = _mapping(raw, source, key, CAMPAIGN_KEYS, "a mapping (scenario, population or group)")
    scenario = raw.get("scenario")
    if not isinstance(scenario, str) or not scenario:
        raise _fail(source, f"{key}.scenario", "required: the scenario the test campaign uses")
    if ("population" in raw) == ("group" in raw):
        raise _fail(source, key, "needs exactly one of population (generated test recipients) "
                    "and group (a test group)")
    population = (int(_number(raw["population"], source, f"{key}.population", integer=True,
                              low=1)) if "population" in raw else None)
    group = raw.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        raise _fail(source, f"{key}.group", "must be a group name")
    batch = int(_number(raw.get("batch_size", 100), source, f"{key}.batch_size", integer=True,
                        low=1))
    return CampaignSpec(scenario, population, group, batch)


def _stop(raw: Any, source: str) -> StopLimits:
    key = "extensions.tenir.stop"
    if raw is None:
        return StopLimits()
    raw = _mapping(raw, source, key, STOP_KEYS)
    lag = raw.get("max_lag_bytes")
    real = raw.get("real_campaigns", True)
    if not isinstance(real, bool):
        raise _fail(source, f"{key}.real_campaigns", "must be true or false")
    return StopLimits(
        min_rate_per_s=_number(raw.get("min_rate_per_s", 0), source, f"{key}.min_rate_per_s"),
        min_rate_for_s=_number(raw.get("min_rate_for_s", 60), source, f"{key}.min_rate_for_s",
                               low=1),
        max_lag_bytes=None if lag is None else int(_number(lag, source, f"{key}.max_lag_bytes",
                                                           integer=True)),
        max_lag_for_s=_number(raw.get("max_lag_for_s", 10), source, f"{key}.max_lag_for_s",
                              low=0),
        real_campaigns=real)


def _tenir_block(experiment: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    blocks = [e for e in experiment.get("extensions") or [] if isinstance(e, Mapping)
              and e.get("name") == "tenir"]
    if len(blocks) != 1:
        raise _fail(source, "extensions", "needs exactly one extension named tenir")
    block = blocks[0]
    for k in block:
        if k not in TENIR_KEYS:
            raise _fail(source, f"extensions.tenir.{k}",
                        f"unknown key (known: {', '.join(sorted(TENIR_KEYS - {'name'}))})")
    return block


def _check_providers(experiment: Mapping[str, Any], source: str) -> None:
    from failover.drills.activities import REGISTRY

    parts = (("steady-state-hypothesis.probes",
              experiment.get("steady-state-hypothesis", {}).get("probes", [])),
             ("method", experiment.get("method", [])),
             ("rollbacks", experiment.get("rollbacks", [])))
    kinds: dict[str, list[str]] = {"method": [], "rollbacks": []}
    for part, activities in parts:
        for i, activity in enumerate(activities):
            key = f"{part}[{i}]"
            provider = activity.get("provider") or {}
            if provider.get("type") != "python" or provider.get("module") != EXTENSION_MODULE:
                raise _fail(source, f"{key}.provider", f"must be a python provider of module "
                            f"{EXTENSION_MODULE} (what tenir can plan, dry-run and heal)")
            spec = REGISTRY.get(str(provider.get("func")))
            if spec is None:
                raise _fail(source, f"{key}.provider.func",
                            f"{provider.get('func')!r} is not a tenir drill activity")
            if spec.kind == "check" and part != "steady-state-hypothesis.probes":
                raise _fail(source, key, "a check belongs to the steady-state hypothesis")
            if part == "steady-state-hypothesis.probes" and spec.kind != "check":
                raise _fail(source, key, "the steady-state hypothesis holds checks only")
            if activity.get("type") != spec.activity_type:
                raise _fail(source, f"{key}.type", f"{spec.name} is a chaostoolkit "
                            f"{spec.activity_type}")
            if activity.get("background"):
                raise _fail(source, f"{key}.background", "tenir runs its steps one at a time")
            for name, value in (provider.get("arguments") or {}).items():
                if name in ("site", "site_a", "site_b", "to", "standby_site") \
                        and value not in ROLES:
                    raise _fail(source, f"{key}.provider.arguments.{name}",
                                f"must be a role ({', '.join(ROLES)}): sites are resolved when "
                                "the drill starts")
            if part in kinds:
                kinds[part].append(spec.kind)
    if "fault" not in kinds["method"]:
        raise _fail(source, "method", "holds no fault")
    if "heal" not in kinds["method"]:
        raise _fail(source, "method", "must heal what it broke (a heal step) so that the "
                    "steady state is checked again on a whole cluster")
    if "heal" not in kinds["rollbacks"]:
        raise _fail(source, "rollbacks", "must heal whatever is still broken (heal_all)")


def parse_drill(data: Any, source: str, expected_kind: str | None = None) -> Drill:
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid

    if not isinstance(data, dict):
        raise _fail(source, "(document)", "must be a chaostoolkit experiment (a mapping)")
    try:
        ensure_experiment_is_valid(data)
    except ChaosException as exc:
        raise _fail(source, "(experiment)", f"chaostoolkit refuses it: {exc}") from exc
    block = _tenir_block(data, source)
    kind = block.get("kind")
    if not isinstance(kind, str) or not kind:
        raise _fail(source, "extensions.tenir.kind", "required: the drill's kind")
    if expected_kind is not None and kind != expected_kind:
        raise _fail(source, "extensions.tenir.kind", f"must be the file's name {expected_kind!r}")
    scope = block.get("scope")
    if not isinstance(scope, str) or not scope.strip():
        raise _fail(source, "extensions.tenir.scope", "required: what the drill touches, in a "
                    "sentence")
    sites = block.get("sites")
    if not isinstance(sites, list) or not sites or not all(s in ROLES for s in sites):
        raise _fail(source, "extensions.tenir.sites", f"a non-empty list of {', '.join(ROLES)}")
    invariants = block.get("invariants", list(DRILL_INVARIANTS[:3]))
    if not isinstance(invariants, list) or not all(i in DRILL_INVARIANTS for i in invariants):
        raise _fail(source, "extensions.tenir.invariants",
                    f"a list of {', '.join(DRILL_INVARIANTS)}")
    _check_providers(data, source)
    return Drill(kind=kind, title=str(data["title"]), description=str(data["description"]),
                 scope=scope.strip(), sites=tuple(sites),
                 campaign=parse_campaign(block.get("campaign"), source,
                                         "extensions.tenir.campaign"),
                 stop=_stop(block.get("stop"), source), invariants=tuple(invariants),
                 experiment=data, source=source)


def load_drill(path: str | Path) -> Drill:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DrillError(str(p), "(file)", str(exc)) from exc
    return parse_drill(data, str(p), expected_kind=p.stem)


def load_all(directory: str | Path = DRILL_DIR) -> list[Drill]:
    paths = sorted(Path(directory).glob("*.yaml"))
    if not paths:
        raise DrillError(str(directory), "(directory)", "no drill (*.yaml)")
    return [load_drill(p) for p in paths]


def kinds(directory: str | Path = DRILL_DIR) -> set[str]:
    """The kinds of drill the catalog has (its files' names), without parsing them."""
    return {p.stem for p in Path(directory).glob("*.yaml")}


def find(kind: str, directory: str | Path = DRILL_DIR) -> Drill:
    path = Path(directory) / f"{kind}.yaml"
    if not path.is_file() or "/" in kind:
        known = ", ".join(p.stem for p in sorted(Path(directory).glob("*.yaml")))
        raise DrillError(str(directory), kind, f"no such drill (drills: {known})")
    return load_drill(path)
