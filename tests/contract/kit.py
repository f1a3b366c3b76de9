"""Helpers of the contract suite: a scenario, a launched campaign, outcomes."""

from __future__ import annotations

from replication.store_api import (
    AttemptState,
    CampaignStore,
    ChannelStep,
    ClaimedBatch,
    Outcome,
    Recipient,
    ScenarioIn,
)

LEASE = 30.0


async def launch(store: CampaignStore, population: int = 6, batch_size: int = 3,
                 name: str = "flood", priority: int = 5) -> int:
    await store.create_scenario(ScenarioIn(name=name, priority=priority, steps=(
        ChannelStep("sms", {"fr": "Crue"}, retries=1),
        ChannelStep("voice", {"fr": "Crue"}, ack="dtmf", ack_timeout_s=30),
    )))
    return await store.launch_campaign(name, "op", population=population,
                                       batch_size=batch_size)


async def claim(store: CampaignStore, node: str, site: str | None = "paris",
                lease_s: float = LEASE) -> ClaimedBatch:
    b = await store.claim_batch(node, lease_s, site=site)
    assert b is not None, f"{node} claimed nothing"
    return b


def out(r: Recipient, campaign: int, *, state: AttemptState = "delivered", final: bool = True,
        site: str = "paris", attempt: int = 0, step: int = 0,
        cmid: str | None = None) -> Outcome:
    channel = "sms" if step == 0 else "voice"
    return Outcome(recipient_id=r.id, channel=channel, carrier=f"sim-{channel}",
                   reference=f"{campaign}:{r.id}:{channel}:{attempt}", state=state, step=step,
                   attempt=attempt, final=final, site=site, carrier_message_id=cmid)


async def finish_all(store: CampaignStore, b: ClaimedBatch, site: str = "paris") -> None:
    await store.record_outcomes(b.id, b.epoch, b.node,
                                [out(r, b.campaign_id, site=site) for r in b.recipients])
    await store.finish_batch(b.id, b.epoch, b.node)
