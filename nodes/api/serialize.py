"""The store's types as JSON objects (the shapes the OpenAPI schemas describe)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from replication.store_api import (
    CampaignSummary,
    ChannelStep,
    Contact,
    ContactIn,
    RecipientOutcome,
    Scenario,
)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def contact_json(c: ContactIn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(c, Contact):
        out["id"] = c.id
    out.update({
        "name": c.name, "phone": c.phone, "mobile": c.mobile, "email": c.email,
        "language": c.language, "groups": list(c.groups), "external_id": c.external_id,
    })
    return out


def step_json(s: ChannelStep) -> dict[str, Any]:
    return {
        "channel": s.channel, "templates": dict(s.templates), "retries": s.retries,
        "retry_interval_s": s.retry_interval_s, "ack": s.ack, "ack_timeout_s": s.ack_timeout_s,
    }


def scenario_json(s: Scenario) -> dict[str, Any]:
    return {
        "id": s.id, "name": s.name, "priority": s.priority,
        "steps": [step_json(step) for step in s.steps],
    }


def summary_json(c: CampaignSummary) -> dict[str, Any]:
    return {
        "id": c.id, "scenario": c.scenario, "state": c.state, "launched_by": c.launched_by,
        "recipients": c.recipients, "delivered": c.delivered, "acknowledged": c.acknowledged,
        "failed": c.failed, "pending": c.pending, "started_at": iso(c.started_at),
        "completed_at": iso(c.completed_at), "by_site": dict(c.by_site),
        "launch": {"state": c.launch_state, "requested": c.requested, "error": c.launch_error},
    }


def outcome_json(o: RecipientOutcome) -> dict[str, Any]:
    return {
        "recipient_id": o.recipient_id, "name": o.name, "state": o.state,
        "channel": o.channel, "site": o.site, "reference": o.reference, "at": iso(o.at),
    }
