"""Failover drills on the nodes' side (docs/drills.md): approvals, accepted runs, the drill's
test campaign, the signed record and the follow-up of its findings, the abort lever, and the
schedule. The runner (``tenir drill run``) talks to any node that answers; the logic is
``failover/drills/book.py``, who is who ``identity.py``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from failover.drills.book import (
    DEFAULT_APPROVAL_S,
    MAX_APPROVAL_S,
    MIN_APPROVAL_S,
    DrillBookError,
)
from failover.drills.schedule import schedule_sentence
from failover.drills.service import DrillService
from failover.evidence import times
from failover.evidence.records import ACTION_STATUS, CRITICALITY, MAX_TEXT
from nodes.api import record_schema
from nodes.api.bodies import Fields, check_query, read_json_object
from nodes.api.campaigns import launch_fields, launch_schema
from nodes.api.context import context
from nodes.api.errors import ApiError, invalid, json_response
from nodes.api.identity import caller, known
from nodes.api.spec import API, JSON, Body, Param, Resp, RouteSpec, filled, nullable, ref

RUN = f"{API}/drills/runs/{{run_id}}"
RECORD = f"{API}/drills/records/{{run_id}}"
# Lengths as sent (what the document's maxLength says)
MAX_DRILL = 100
MAX_RUN_ID = 100
MAX_APPROVAL = 30
MAX_USER = 200
MAX_REASON = 1000
MAX_DUE = 40
MAX_POPULATION = 1_000_000  # a drill's test campaign, written at once


def _service(request: web.Request) -> DrillService:
    svc = context(request).drills
    if svc is None:
        raise ApiError(503, "drills are not configured on this node")
    return svc


def _refused(exc: DrillBookError) -> ApiError:
    return ApiError(exc.status, exc.problem, exc.field)


async def approve(request: web.Request) -> web.Response:
    f = Fields(await read_json_object(request), ("drill", "valid_for_s"))
    try:
        body = await _service(request).book.approve(
            f.req_str("drill", MAX_DRILL), caller(request),
            f.number("valid_for_s", DEFAULT_APPROVAL_S, MIN_APPROVAL_S, MAX_APPROVAL_S))
    except DrillBookError as exc:
        raise _refused(exc) from None
    return json_response(body, 201)


async def start_run(request: web.Request) -> web.Response:
    f = Fields(await read_json_object(request), ("drill", "run_id", "approval", "approved_by"))
    try:
        body = await _service(request).book.start(
            f.req_str("drill", MAX_DRILL), f.req_str("run_id", MAX_RUN_ID), caller(request),
            approval=f.opt_str("approval", MAX_APPROVAL),
            approved_by=f.opt_str("approved_by", MAX_USER),
            known=known(request))
    except DrillBookError as exc:
        raise _refused(exc) from None
    return json_response(body, 201)


async def launch_campaign(request: web.Request) -> web.Response:
    """The drill's own test campaign, launched under the run's name (an on-call runner may)."""
    run_id = request.match_info["run_id"]
    launch = launch_fields(await read_json_object(request), MAX_POPULATION)
    scenario, group, population = launch.scenario, launch.group, launch.population
    svc = _service(request)
    try:
        run = await svc.book.started(run_id)
    except DrillBookError as exc:
        raise _refused(exc) from None
    if await svc.book.ledger.last_of_kind("drill.record", record_id=run_id) is not None:
        raise ApiError(409, f"drill {run_id} is over: it has its record", "run_id")
    who = caller(request)
    ctx = context(request)
    from replication.store_api import InvalidInput, NotFound

    try:
        campaign = await ctx.store.launch_campaign(
            scenario, f"drill {run_id} ({who.identity})", group=group, population=population,
            batch_size=launch.batch_size)
    except NotFound:
        field, name = ("group", group) if group else ("scenario", scenario)
        raise invalid(field, f"unknown {field} {name!r}") from None
    except InvalidInput:
        raise
    await svc.book.ledger.append(
        "campaign.launch", f"campaign {campaign} launched for drill {run_id}: scenario "
        f"{scenario!r}", actor=who.identity, node=ctx.node, site=ctx.site, campaign_id=campaign,
        details={"drill": run["drill"], "run_id": run_id, "scenario": scenario,
                 "group": group, "population": population})
    return json_response({"id": campaign}, 201)


async def store_record(request: web.Request) -> web.Response:
    run_id = request.match_info["run_id"]
    try:
        seq = await _service(request).book.store_record(run_id, await read_json_object(request),
                                                       caller(request))
    except DrillBookError as exc:
        raise _refused(exc) from None
    return json_response({"seq": seq, "id": run_id}, 201)


async def abort(request: web.Request) -> web.Response:
    f = Fields(await read_json_object(request), ("run_id", "reason"))
    run_id = f.opt_str("run_id", MAX_RUN_ID)
    reason = f.req_str("reason", MAX_REASON)
    svc = _service(request)
    if svc.lever is None:
        raise ApiError(503, "this node has no coordination service: pull the lever with "
                       "tenir drill abort instead")
    who = caller(request)
    request_ = await svc.lever.request_abort(who.identity, reason, run_id)
    recorded: int | None = None
    # evidence, not the lever: PostgreSQL may be failing over right now
    with contextlib.suppress(Exception):
        recorded = await svc.book.abort_requested(run_id, reason, who)
    return json_response({"requested": True, "run_id": run_id, "by": request_.by,
                          "at": request_.at, "ledger_seq": recorded}, 202)


async def get_schedule(request: web.Request) -> web.Response:
    check_query(request, ())
    states = await _service(request).schedule()
    return json_response({"drills": [s.to_json() for s in states],
                          "sentence": schedule_sentence(states)})


async def get_record(request: web.Request) -> web.Response:
    check_query(request, ())
    try:
        body = await _service(request).book.record(request.match_info["run_id"])
    except DrillBookError as exc:
        raise _refused(exc) from None
    return json_response(body)


def _due(action: Fields) -> str | None:
    """A corrective action's due time as sent (an RFC 3339 time, as the record keeps it)."""
    due = action.data.get("due")
    if due is None:
        return None
    if not isinstance(due, str) or len(due) > MAX_DUE:
        raise invalid(action.path("due"), f"must be a time ({MAX_DUE} characters at most)")
    try:
        times.parse(due)
    except ValueError as exc:
        raise invalid(action.path("due"), str(exc)) from None
    return due


async def add_finding(request: web.Request) -> web.Response:
    f = Fields(await read_json_object(request), ("criticality", "description",
                                                 "corrective_action"))
    action = Fields(f.obj("corrective_action"), ("description", "owner", "due"),
                    "corrective_action")
    body: dict[str, Any] = {"criticality": f.choice("criticality", CRITICALITY),
                            "description": f.req_str("description", MAX_TEXT),
                            "corrective_action": {"description": action.req_str("description",
                                                                                MAX_TEXT),
                                                  "owner": action.req_str("owner", MAX_USER)}}
    due = _due(action)
    if due is not None:
        body["corrective_action"]["due"] = due
    try:
        out = await _service(request).book.add_finding(request.match_info["run_id"], body,
                                                       caller(request))
    except DrillBookError as exc:
        raise _refused(exc) from None
    return json_response(out, 201)


async def update_finding(request: web.Request) -> web.Response:
    f = Fields(await read_json_object(request), ("status", "note"))
    try:
        out = await _service(request).book.update_finding(
            request.match_info["run_id"], request.match_info["finding"],
            f.choice("status", ACTION_STATUS), f.opt_str("note", MAX_TEXT), caller(request))
    except DrillBookError as exc:
        raise _refused(exc) from None
    return json_response(out, 201)


_OBJ: JSON = {"type": "object"}
_RUN_ID = Param("run_id", "path", {"type": "string"}, "the drill run's id")
_DRILL = filled(MAX_DRILL, description="a drill of the catalog (chaos/drills/*.yaml)")
SCHEMAS: dict[str, JSON] = {
    "DrillApprovalIn": {"type": "object", "additionalProperties": False, "required": ["drill"],
                        "properties": {
        "drill": _DRILL,
        "valid_for_s": nullable({"type": "number", "minimum": MIN_APPROVAL_S,
                                 "maximum": MAX_APPROVAL_S, "default": DEFAULT_APPROVAL_S})}},
    "DrillRunIn": {"type": "object", "additionalProperties": False,
                   "required": ["drill", "run_id"], "properties": {
        "drill": _DRILL,
        "run_id": filled(MAX_RUN_ID, description="<drill>-YYYYMMDDTHHMMSSZ"),
        "approval": nullable({"type": "string", "maxLength": MAX_APPROVAL,
                              "description": "what POST /drills/approvals returned"}),
        "approved_by": nullable({"type": "string", "maxLength": MAX_USER,
                                 "description": "a user of this API, not the caller"}),
    }},
    "DrillCampaignIn": launch_schema(MAX_POPULATION),
    "DrillAbortIn": {"type": "object", "additionalProperties": False, "required": ["reason"],
                     "properties": {
        "run_id": nullable({"type": "string", "maxLength": MAX_RUN_ID,
                            "description": "the run to stop; none: whichever runs"}),
        "reason": filled(MAX_REASON)}},
    "DrillFindingIn": {"type": "object", "additionalProperties": False,
                       "required": ["criticality", "description", "corrective_action"],
                       "properties": {
        "criticality": {"enum": list(CRITICALITY)},
        "description": filled(MAX_TEXT),
        "corrective_action": {
            "type": "object", "additionalProperties": False,
            "required": ["description", "owner"], "properties": {
                "description": filled(MAX_TEXT), "owner": filled(MAX_USER),
                "due": nullable({**times.SCHEMA, "maxLength": MAX_DUE})}}}},
    "DrillFindingUpdate": {"type": "object", "additionalProperties": False,
                           "required": ["status"], "properties": {
        "status": {"enum": list(ACTION_STATUS)},
        "note": nullable({"type": "string", "maxLength": MAX_TEXT})}},
}


def _body(name: str) -> Body:
    return Body("application/json", ref(name))


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", f"{API}/drills/approvals", approve, "control", "approveDrill",
              "Approve a drill (valid 24 h by default; the runner must be someone else)",
              "drills", {201: Resp("the approval", _OBJ)}, body=_body("DrillApprovalIn"),
              checked=("drill",)),
    RouteSpec("POST", f"{API}/drills/runs", start_run, "control", "startDrillRun",
              "Accept a real drill run: its approval by someone else is checked and spent",
              "drills", {201: Resp("runner and approver", _OBJ)}, body=_body("DrillRunIn"),
              errors=(409,), checked=("drill", "run_id", "approval")),
    RouteSpec("POST", f"{RUN}/campaign", launch_campaign, "control", "launchDrillCampaign",
              "Launch the drill's own test campaign", "drills",
              {201: Resp("launched", _OBJ)}, body=_body("DrillCampaignIn"), params=(_RUN_ID,),
              errors=(409,), checked=("scenario", "group")),
    RouteSpec("POST", f"{RUN}/record", store_record, "control", "storeDrillRecord",
              "Sign and append the drill's record (runner and approver from its start)",
              "drills", {201: Resp("appended", _OBJ)}, body=_body("DrillRunRecord"),
              params=(_RUN_ID,), errors=(409,), checked=record_schema.RUN_CHECKED),
    RouteSpec("POST", f"{API}/drills/abort", abort, "control", "abortDrill",
              "The safety lever: stop the running drill (it heals and records aborted)",
              "drills", {202: Resp("requested", _OBJ)}, body=_body("DrillAbortIn")),
    RouteSpec("GET", f"{API}/drills/schedule", get_schedule, "read", "getDrillSchedule",
              "Each drill kind's interval, last run and whether it is overdue", "drills",
              {200: Resp("the schedule", _OBJ)}),
    RouteSpec("GET", RECORD, get_record, "read", "getDrillRecord",
              "A drill's record (signature checked) with its findings' follow-ups", "drills",
              {200: Resp("the record", _OBJ)}, params=(_RUN_ID,)),
    RouteSpec("POST", f"{RECORD}/findings", add_finding, "control", "addDrillFinding",
              "Add a finding to a drill (a signed follow-up record)", "drills",
              {201: Resp("added", _OBJ)}, params=(_RUN_ID,), body=_body("DrillFindingIn")),
    RouteSpec("POST", f"{RECORD}/findings/{{finding}}", update_finding, "control",
              "updateDrillFinding", "Move a finding's corrective action (in_progress, done)",
              "drills", {201: Resp("updated", _OBJ)},
              params=(_RUN_ID, Param("finding", "path", {"type": "string"}, "F1, F2...")),
              body=_body("DrillFindingUpdate")),
)
