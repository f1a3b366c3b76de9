"""``tenir carriers report`` when a site's simulator is down: that site is reported unreachable,
the others are still reported, and the command fails only when none answers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cluster.carriers_report import CarrierSite, gather, render
from tests.carriers.support import HOST, SimFactory

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_a_site_down_is_reported_unreachable_not_a_traceback(
    sim_factory: SimFactory,
) -> None:
    paris = await sim_factory(site="paris")
    marseille = await sim_factory(site="marseille")
    for sim in (paris, marseille):
        sim.state.record("sms", "4:1:sms:0", "x")
    paris.state.record("sms", "4:1:sms:0", "y")
    sites = [CarrierSite(s.config.site, f"{s.config.site}-carriers",
                         f"http://{HOST}:{s.ports['control']}") for s in (paris, marseille)]

    both = await _gather(sites)
    assert both["unreachable"] == [] and both["cross_site_duplicates"]["sms"] == 1
    assert both["carriers"][0]["report"]["sms"]["delivered"] == 2

    await marseille.stop()
    one = await _gather(sites)
    assert one["unreachable"] == ["marseille"]
    assert one["carriers"][0]["report"]["sms"]["received"] == 2
    assert "error" in one["carriers"][1]
    text, code = render(one, as_json=False)
    assert code == 1  # something is not running; the survivors are still reported
    assert "marseille" in text and "UNREACHABLE" in text and "paris      sms" in text
    assert "unreachable: marseille" in text
    doc, code = render(one, as_json=True)
    assert code == 1 and json.loads(doc)["unreachable"] == ["marseille"]

    await paris.stop()
    none = await _gather(sites)
    assert none["unreachable"] == ["paris", "marseille"]
    text, code = render(none, as_json=False)
    assert code == 1 and "no carrier simulator answered" in text


async def _gather(sites: list[CarrierSite]) -> dict[str, Any]:
    return await asyncio.to_thread(gather, sites, 1.0)
