"""The shipped drills load as chaostoolkit experiments with tenir's block; a drill that is not
one tenir can plan, dry-run and heal is refused, the error naming the file and the key."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from failover.drills.catalog import DRILL_DIR, DrillError, load_all, parse_drill

pytestmark = pytest.mark.unit

SHIPPED = {"lose-primary-site", "lose-standby-site", "cut-datacenter-link", "lose-witness",
           "carrier-outage", "switchover-and-back"}


def base() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DRILL_DIR / "lose-witness.yaml").read_text())
    return copy.deepcopy(data)


def test_every_shipped_drill_loads() -> None:
    drills = {d.kind: d for d in load_all()}
    assert set(drills) == SHIPPED
    assert drills["lose-primary-site"].sites == ("primary",)
    assert drills["cut-datacenter-link"].sites == ("primary", "standby")
    for d in drills.values():
        assert [a["provider"]["func"] for a in d.activities("hypothesis")] == [
            "quorum_has_spare", "sync_standby_streaming", "carriers_healthy",
            "no_site_drained", "no_real_campaign"]
        assert d.activities("rollbacks")[0]["provider"]["func"] == "heal_all"


def _refused(data: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(DrillError) as caught:
        parse_drill(data, "x.yaml")
    assert caught.value.key == key, str(caught.value)
    assert words in str(caught.value)
    assert str(caught.value).startswith("x.yaml: ")


def test_a_provider_outside_tenirs_extension_is_refused() -> None:
    data = base()
    data["method"][2]["provider"] = {"type": "process", "path": "/bin/true"}
    _refused(data, "method[2].provider", "python provider of module failover.drills.activities")


def test_a_function_the_extension_does_not_have_is_refused_by_chaostoolkit() -> None:
    data = base()
    data["method"][2]["provider"]["func"] = "drop_database"
    _refused(data, "(experiment)", "chaostoolkit refuses it")


def test_wrong_arguments_are_refused_by_chaostoolkit() -> None:
    data = base()
    data["method"][2]["provider"]["arguments"] = {"host": "witness-quorum"}
    _refused(data, "(experiment)", "required argument 'site' is missing from activity 'power_cut'")


def test_a_site_must_be_a_role() -> None:
    data = base()
    data["method"][2]["provider"]["arguments"] = {"site": "paris"}
    _refused(data, "method[2].provider.arguments.site", "must be a role")


def test_a_method_that_does_not_heal_is_refused() -> None:
    data = base()
    data["method"] = [a for a in data["method"] if a["provider"]["func"] != "heal"]
    _refused(data, "method", "must heal what it broke")


def test_rollbacks_must_heal() -> None:
    data = base()
    data["rollbacks"] = []
    _refused(data, "rollbacks", "must heal whatever is still broken")


def test_a_check_belongs_to_the_hypothesis() -> None:
    data = base()
    data["method"].insert(0, copy.deepcopy(data["steady-state-hypothesis"]["probes"][0]))
    _refused(data, "method[0]", "a check belongs to the steady-state hypothesis")


def test_the_tenir_block_is_checked() -> None:
    data = base()
    data["extensions"][0]["campaign"] = {"scenario": "demo", "population": 10, "group": "x"}
    _refused(data, "extensions.tenir.campaign", "exactly one of population")
    data = base()
    data["extensions"][0]["stop"]["min_rate"] = 3
    _refused(data, "extensions.tenir.stop.min_rate", "unknown key")
    data = base()
    data["extensions"] = []
    _refused(data, "extensions", "exactly one extension named tenir")


def test_a_background_step_is_refused() -> None:
    data = base()
    data["method"][2]["background"] = True
    _refused(data, "method[2].background", "one at a time")
