"""Which channels work where, published in the membership and read back."""

from __future__ import annotations

import pytest

from cluster.coordination.base import MemberInfo
from nodes.breaker import Breakers
from nodes.channels import ChannelView
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]
ALL = ("sms", "email", "voice")


async def test_a_failing_channel_is_unpublished_and_seen_from_both_sites() -> None:
    server = FakeCoordinationServer()
    views = {}
    breakers = {}
    for name, site in (("paris-node1", "paris"), ("marseille-node1", "marseille")):
        coord = FakeCoordinator(server, name)
        me = MemberInfo(name, site, name, carriers=ALL)
        await coord.join(me)
        breakers[site] = Breakers(threshold=2, cooldown_s=60)
        views[site] = ChannelView(coord, me, breakers[site])
    for view in views.values():
        await view.refresh()
    assert views["paris"].available_elsewhere("sms") is True
    # paris's SMS carrier fails: its breaker opens and paris stops advertising SMS
    breakers["paris"].of("sms").record(False)
    breakers["paris"].of("sms").record(False)
    await views["paris"].refresh()
    await views["marseille"].refresh()
    paris_member = next(m for m in await FakeCoordinator(server, "x").members()
                        if m.name == "paris-node1")
    assert paris_member.carriers == ("email", "voice")
    assert views["paris"].available_elsewhere("sms") is True  # marseille still sends SMS
    assert views["marseille"].available_elsewhere("sms") is False  # paris no longer does
    assert views["marseille"].available_elsewhere("email") is True
