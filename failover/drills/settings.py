"""What the inventory says about drills, read by the CLI the way Ansible reads it for the nodes:
``all.vars`` of ``hosts.yml``, then the plain YAML files of ``group_vars/all`` beside it (a
vault-encrypted file is skipped: drills need no secret from it).

* ``tenir_drill_intervals``: drill kind -> interval (``quarterly``, ``90d``...), the schedule;
* ``tenir_drill_targets``: ``default`` and per kind: ``rto_s`` (time to the first message after
  the fault), ``rpo_s``, ``lost`` (outcomes lost), ``sent_twice`` (references sent twice; null:
  the in-flight bound of the duplicates checker), ``complete_s`` (launch to completion);
* ``tenir_drill_campaign``: the test campaign, ``scenario`` and ``population`` or ``group``
  (overrides the drill's own);
* ``tenir_drill_real_campaign_priority``: a running campaign of this priority or a more urgent
  one (1) refuses a drill, and one launched meanwhile stops it (default 5);
* ``tenir_drill_max_lag_bytes``: the synchronous standby's lag a drill accepts to start
  (default 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from cluster.topology import Topology
from failover.drills.catalog import CampaignSpec, Drill, DrillError, parse_campaign
from failover.drills.schedule import parse_intervals
from failover.drills.session import Settings

DEFAULT_TARGETS: dict[str, float | None] = {"rto_s": 25.0, "rpo_s": 0.0, "lost": 0.0,
                                            "sent_twice": None, "complete_s": 600.0}
TARGET_KEYS = tuple(DEFAULT_TARGETS)


def inventory_vars(topo: Topology) -> dict[str, Any]:
    """``all.vars`` overlaid with ``group_vars/all.yml`` or ``group_vars/all/*.yml``."""
    merged = dict(topo.vars)
    folder = Path(topo.source).parent / "group_vars"
    files = sorted((folder / "all").glob("*.yml")) if (folder / "all").is_dir() else []
    if (folder / "all.yml").is_file():
        files.insert(0, folder / "all.yml")
    for path in files:
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("$ANSIBLE_VAULT"):
            continue
        data = yaml.safe_load(text) or {}
        if not isinstance(data, Mapping):
            raise DrillError(str(path), "(file)", "must be a mapping of variables")
        merged.update(data)
    return merged


def _number(value: Any, key: str, source: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise DrillError(source, key, "must be a number >= 0 (or null: not a target)")
    return float(value)


def targets_for(variables: Mapping[str, Any], kind: str, source: str) -> dict[str, float | None]:
    raw = variables.get("tenir_drill_targets") or {}
    if not isinstance(raw, Mapping):
        raise DrillError(source, "tenir_drill_targets", "must be a mapping (default, per kind)")
    out = dict(DEFAULT_TARGETS)
    for layer in ("default", kind):
        values = raw.get(layer) or {}
        if not isinstance(values, Mapping):
            raise DrillError(source, f"tenir_drill_targets.{layer}", "must be a mapping")
        for key, value in values.items():
            if key not in TARGET_KEYS:
                raise DrillError(source, f"tenir_drill_targets.{layer}.{key}",
                                 f"unknown target (known: {', '.join(TARGET_KEYS)})")
            out[key] = _number(value, f"tenir_drill_targets.{layer}.{key}", source)
    for key in ("rto_s", "rpo_s"):
        if out[key] is None:
            raise DrillError(source, f"tenir_drill_targets.{kind}.{key}", "is required")
    return out


def drill_settings(topo: Topology, drill: Drill) -> tuple[Drill, Settings]:
    """The drill with the inventory's campaign, and its settings (targets, limits)."""
    variables = inventory_vars(topo)
    source = topo.source
    campaign: CampaignSpec = drill.campaign
    if variables.get("tenir_drill_campaign") is not None:
        campaign = parse_campaign(variables["tenir_drill_campaign"], source,
                                  "tenir_drill_campaign")
    priority = variables.get("tenir_drill_real_campaign_priority", 5)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 9:
        raise DrillError(source, "tenir_drill_real_campaign_priority", "must be 1 to 9")
    lag = _number(variables.get("tenir_drill_max_lag_bytes", 0), "tenir_drill_max_lag_bytes",
                  source)
    settings = Settings(targets=targets_for(variables, drill.kind, source),
                        real_campaign_priority=priority, max_lag_bytes=int(lag or 0))
    return replace(drill, campaign=campaign), settings


def intervals(topo: Topology) -> dict[str, float]:
    return parse_intervals(inventory_vars(topo).get("tenir_drill_intervals"))
