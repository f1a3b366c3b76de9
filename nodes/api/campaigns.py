"""Campaigns: launch, progress, pause/resume/cancel, per-recipient outcomes.

State changes: ``pause`` running -> paused, ``resume`` paused -> running, ``cancel``
running|paused -> cancelled. Asking for the state a campaign is already in succeeds without
change (a retried request is harmless); any other change from the current state is 409. A
launch records its user in ``launched_by``; a change of state records an
``operator.campaign.<state>`` event with the user in ``details.by``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from nodes.api.bodies import Fields, check_query, page, query_int, read_json_object
from nodes.api.context import context, principal
from nodes.api.errors import ApiError, invalid, json_response
from nodes.api.serialize import outcome_json, summary_json
from nodes.api.spec import (
    API,
    JSON,
    LIMIT,
    MAX_OFFSET,
    OFFSET,
    Body,
    Handler,
    Param,
    Resp,
    RouteSpec,
    list_of,
    nullable,
    page_of,
    ref,
    text,
)
from nodes.api.validate import MAX_GROUP
from nodes.launches import LaunchWriter
from nodes.logs import campaign_context
from replication.store_api import CampaignState, InvalidInput, NotFound
from replication.store_campaigns import CAMPAIGN_STATES

log = logging.getLogger("tenir.api.campaigns")

MAX_POPULATION = 9_999_999  # generated numbers are +33639 and 7 digits
MAX_SCENARIO = 100  # a scenario's name (scenarios.py)
MAX_BATCH_SIZE = 10_000
CAMPAIGN = f"{API}/campaigns/{{id:\\d{{1,18}}}}"

# action -> (target state, states it may leave)
TRANSITIONS: dict[str, tuple[CampaignState, frozenset[CampaignState]]] = {
    "pause": ("paused", frozenset({"running"})),
    "resume": ("running", frozenset({"paused"})),
    "cancel": ("cancelled", frozenset({"running", "paused"})),
}


def _campaign_id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def _ledger(request: web.Request, kind: str, campaign_id: int, sentence: str,
                  details: dict[str, Any]) -> None:
    """Append who did what to the continuity ledger. What was done is done: a ledger that
    cannot be written is logged, not turned into an error the client would retry."""
    ctx = context(request)
    try:
        await asyncio.shield(ctx.store.record_event(
            kind, sentence, ctx.node, ctx.site, campaign_id=campaign_id, details=details,
            actor=principal(request).id))
    except Exception as exc:
        log.warning("%s not recorded in the ledger: %s: %s", kind, type(exc).__name__, exc)


@dataclass(frozen=True)
class LaunchFields:
    """A campaign launch's body, checked (``CampaignLaunch`` in the OpenAPI document)."""

    scenario: str
    group: str | None
    population: int | None
    batch_size: int | None  # None: the store's automatic size (``auto_batch_size``)


def launch_fields(body: dict[str, Any], max_population: int = MAX_POPULATION) -> LaunchFields:
    """The fields of a launch, each checked, with either a group or a population (4xx naming
    the field otherwise). A campaign's launch and a drill's test campaign read the same body."""
    f = Fields(body, ("scenario", "group", "population", "batch_size"))
    launch = LaunchFields(f.req_str("scenario", MAX_SCENARIO), f.opt_str("group", MAX_GROUP),
                          f.opt_int("population", 1, max_population),
                          f.opt_int("batch_size", 1, MAX_BATCH_SIZE))
    if (launch.group is None) == (launch.population is None):
        raise invalid("group", "give either a group or a population, not both")
    return launch


async def launch_campaign(request: web.Request) -> web.Response:
    launch = launch_fields(await read_json_object(request))
    scenario, group, population = launch.scenario, launch.group, launch.population
    batch_size = launch.batch_size
    ctx = context(request)
    try:
        await ctx.store.get_scenario(scenario)
    except NotFound:
        raise invalid("scenario", f"unknown scenario {scenario!r}") from None
    who = principal(request)
    launches = ctx.launches or LaunchWriter(ctx.store, ctx.node)
    try:
        cursor = await launches.launch(
            scenario, who.id, group=group, population=population, batch_size=batch_size,
        )
    except InvalidInput:
        raise  # names its field (the PostgreSQL store's UnknownName is one too)
    except NotFound:
        # The scenario was just found, so what is missing is the group.
        raise invalid("group", f"unknown group {group!r}") from None
    campaign_id = cursor.campaign_id
    ctx.metrics.campaigns_launched.inc()
    target = f"group {group!r}" if group is not None else f"population {population}"
    with campaign_context(campaign_id):
        log.info("campaign launched: scenario %r, %s, by %s", scenario, target, who.id)
        await _ledger(request, "campaign.launch", campaign_id,
                      f"campaign {campaign_id} launched: scenario {scenario!r}, {target}",
                      {"scenario": scenario, "group": group, "population": population})
    return json_response({"id": campaign_id, "recipients": cursor.written,
                          "requested": cursor.requested,
                          "launch_state": "written" if cursor.done else "writing"}, 201,
                         {"Location": f"{API}/campaigns/{campaign_id}"})


_STATE = f"({'|'.join(CAMPAIGN_STATES)})"
_STATES = f"^{_STATE}(,{_STATE})*$"


async def list_campaigns(request: web.Request) -> web.Response:
    check_query(request, ("limit", "state"))
    limit = query_int(request, "limit", 50, 1, 500)
    raw = request.query.get("state")
    states = None if raw is None else [s.strip() for s in raw.split(",")]
    campaigns = await context(request).store.list_campaigns(
        limit=limit, states=cast("list[CampaignState] | None", states))
    return json_response({"items": [summary_json(c) for c in campaigns]})


async def get_campaign(request: web.Request) -> web.Response:
    check_query(request, ())
    summary = await context(request).store.campaign_summary(_campaign_id(request))
    return json_response(summary_json(summary))


def _control(action: str) -> Handler:
    target, leaves = TRANSITIONS[action]

    async def change_state(request: web.Request) -> web.Response:
        check_query(request, ())
        campaign_id = _campaign_id(request)
        store = context(request).store
        with campaign_context(campaign_id):
            summary = await store.campaign_summary(campaign_id)
            if summary.state == target:
                return json_response(summary_json(summary))
            if summary.state not in leaves:
                raise ApiError(409, f"campaign {campaign_id} is {summary.state}: "
                               f"cannot {action} it", "state")
            await store.set_campaign_state(campaign_id, target)
            log.info("campaign %s by %s", target, principal(request).id)
            await _ledger(request, f"campaign.{action}", campaign_id,
                          f"campaign {campaign_id} {target} (was {summary.state})",
                          {"from": summary.state, "to": target})
            summary = await store.campaign_summary(campaign_id)
        return json_response(summary_json(summary))

    change_state.__name__ = f"{action}_campaign"
    return change_state


async def list_recipients(request: web.Request) -> web.Response:
    check_query(request, ("limit", "offset"))
    limit = query_int(request, "limit", 100, 1, 1000)
    offset = query_int(request, "offset", 0, 0, MAX_OFFSET)
    outcomes = await context(request).store.recipient_outcomes(
        _campaign_id(request), limit=limit, offset=offset,
    )
    return json_response(page([outcome_json(o) for o in outcomes], limit, offset))


_NULLABLE_TIME: JSON = {"type": ["string", "null"], "format": "date-time"}

def launch_schema(max_population: int) -> JSON:
    """A campaign's launch (this module's route and a drill's test campaign)."""
    return {
        "type": "object", "additionalProperties": False, "required": ["scenario"],
        "description": "exactly one of group and population",
        "properties": {
            "scenario": text(MAX_SCENARIO),
            "group": nullable(text(MAX_GROUP, description="alert the members of this group")),
            "population": nullable({
                "type": "integer", "minimum": 1, "maximum": max_population,
                "description": "N generated test recipients (synthetic names, fictional "
                               "numbers, example.invalid addresses), for drills and "
                               "benchmarks"}),
            "batch_size": nullable({
                "type": "integer", "minimum": 1, "maximum": MAX_BATCH_SIZE,
                "description": "recipients per batch (the unit a node claims, and the watchdog "
                               "moves); omitted or null: 100, larger past 200,000 recipients "
                               "(about 2,000 batches, at most 500 recipients each)"}),
        },
        "oneOf": [
            {"required": ["group"], "properties": {"group": {"type": "string"},
                                                   "population": {"type": "null"}}},
            {"required": ["population"], "properties": {"population": {"type": "integer"},
                                                        "group": {"type": "null"}}},
        ],
    }


SCHEMAS: dict[str, JSON] = {
    "CampaignLaunch": launch_schema(MAX_POPULATION),
    "CampaignCreated": {
        "type": "object", "required": ["id", "recipients", "requested", "launch_state"],
        "description": "answered once the first recipients are written and claimable; the "
                       "rest is written behind them (launch_state writing)",
        "properties": {"id": {"type": "integer"},
                       "recipients": {"type": "integer", "description": "written so far"},
                       "requested": {"type": "integer"},
                       "launch_state": {"enum": ["writing", "written"]}},
    },
    "CampaignProgress": {
        "type": "object",
        "required": ["id", "scenario", "state", "launched_by", "recipients", "delivered",
                     "acknowledged", "failed", "pending", "started_at", "completed_at",
                     "by_site", "launch"],
        "properties": {
            "id": {"type": "integer"}, "scenario": {"type": "string"},
            "state": {"enum": ["running", "paused", "completed", "cancelled", "failed"],
                      "description": "failed: the launch could not be written to its end "
                                     "(launch.error); what was written was sent"},
            "launched_by": {"type": "string", "description": "role:token fingerprint"},
            "recipients": {"type": "integer", "description": "written"},
            "delivered": {"type": "integer"},
            "acknowledged": {"type": "integer"}, "failed": {"type": "integer"},
            "pending": {"type": "integer"},
            "started_at": {"type": "string", "format": "date-time"},
            "completed_at": _NULLABLE_TIME,
            "by_site": {"type": "object", "additionalProperties": {"type": "integer"},
                        "description": "final deliveries per site"},
            "launch": {"type": "object", "required": ["state", "requested", "error"],
                       "properties": {"state": {"enum": ["writing", "written", "failed"]},
                                      "requested": {"type": ["integer", "null"]},
                                      "error": {"type": ["string", "null"]}}},
        },
    },
    "RecipientOutcome": {
        "type": "object",
        "required": ["recipient_id", "name", "state", "channel", "site", "reference", "at"],
        "properties": {
            "recipient_id": {"type": "integer"}, "name": {"type": "string"},
            "state": {"enum": ["pending", "delivered", "acknowledged", "failed"]},
            "channel": {"enum": ["sms", "email", "voice", None]},
            "site": {"type": ["string", "null"]},
            "reference": {"type": ["string", "null"]},
            "at": _NULLABLE_TIME,
        },
    },
}

_ID = Param("id", "path", {"type": "integer", "minimum": 0}, "campaign id", True)
_PROGRESS = {200: Resp("the campaign's progress", ref("CampaignProgress"))}


def _control_route(action: str, summary: str) -> RouteSpec:
    return RouteSpec("POST", f"{CAMPAIGN}/{action}", _control(action), "control",
                     f"{action}Campaign", summary, "campaigns", _PROGRESS, params=(_ID,),
                     errors=(409,))


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", f"{API}/campaigns", launch_campaign, "write", "launchCampaign",
              "Launch a campaign from a scenario", "campaigns",
              {201: Resp("launched", ref("CampaignCreated"))},
              body=Body("application/json", ref("CampaignLaunch")),
              checked=("scenario", "group")),
    RouteSpec("GET", f"{API}/campaigns", list_campaigns, "read", "listCampaigns",
              "List the latest campaigns, newest first", "campaigns",
              {200: Resp("latest campaigns", list_of("CampaignProgress"))},
              params=(Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500,
                                               "default": 50}, "how many"),
                      Param("state", "query", {"type": "string", "pattern": _STATES,
                                               "example": "running,paused"},
                            "only campaigns in these states (comma-separated)"))),
    RouteSpec("GET", CAMPAIGN, get_campaign, "read", "getCampaign", "A campaign's progress",
              "campaigns", _PROGRESS, params=(_ID,)),
    _control_route("pause", "Pause a running campaign"),
    _control_route("resume", "Resume a paused campaign"),
    _control_route("cancel", "Cancel a running or paused campaign"),
    RouteSpec("GET", f"{CAMPAIGN}/recipients", list_recipients, "read", "listRecipients",
              "Per-recipient outcomes of a campaign", "campaigns",
              {200: Resp("one page", page_of("RecipientOutcome"))},
              params=(_ID, LIMIT, OFFSET)),
)
