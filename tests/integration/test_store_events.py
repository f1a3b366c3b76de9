"""Events and the ownership view on a real PostgreSQL: what the watchdog reads and writes."""

from __future__ import annotations

import pytest

from replication.store import PgCampaignStore
from replication.store_api import InvalidInput
from tests.integration.support import sms_scenario

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_batches_in_flight_follow_claims_and_reassignment(store: PgCampaignStore) -> None:
    await store.create_scenario(sms_scenario("flood"))
    await store.launch_campaign("flood", "op", population=30, batch_size=10)
    assert await store.batches_in_flight() == {}
    await store.claim_batch("paris-node1", 30)
    await store.claim_batch("paris-node1", 30)
    await store.claim_batch("marseille-node1", 30)
    assert await store.batches_in_flight() == {"paris-node1": 2, "marseille-node1": 1}
    assert await store.reassign_batches("paris-node1") == 2
    assert await store.batches_in_flight() == {"marseille-node1": 1}


async def test_events_are_recorded_in_order_with_their_details(store: PgCampaignStore) -> None:
    first = await store.record_event("watchdog.move", "moved 2 batches of paris-node1",
                                     "marseille-node1", "marseille",
                                     details={"from": "paris-node1", "batches": 2})
    second = await store.record_event("watchdog.cycle", "nothing to move", "marseille-node1",
                                      "marseille")
    assert second > first
    events = await store.list_events(limit=10)
    assert [e.id for e in events] == [second, first, 0]  # 0: the ledger's opening entry
    assert events[2].kind == "ledger.opened"
    assert events[1].actor == "node:marseille-node1"
    assert events[1].details == {"from": "paris-node1", "batches": 2}
    assert events[1].at <= events[0].at
    with pytest.raises(InvalidInput, match=r"^kind: "):  # named, not a raw CheckViolation
        await store.record_event("Bad Kind!", "x", "n", "s")
