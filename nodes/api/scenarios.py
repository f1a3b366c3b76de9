"""Scenarios: a named, prioritised fallback order of channel steps.

A step's acknowledgement rule must fit its channel: ``dtmf`` only on voice, ``reply`` only on
SMS, ``link`` only on e-mail; ``none`` anywhere. Templates are keyed by ISO 639-1 language and
must include ``fr``, the fallback language.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from nodes.api.bodies import Fields, check_query, read_json_object
from nodes.api.context import context
from nodes.api.errors import ApiError, invalid, json_response
from nodes.api.serialize import scenario_json
from nodes.api.spec import API, JSON, Body, Param, Resp, RouteSpec, list_of, nullable, ref, text
from nodes.api.validate import check_language, check_name
from replication.store_api import CHANNELS, AckRule, Channel, ChannelStep, NotFound, ScenarioIn

ACK_RULES: tuple[AckRule, ...] = ("none", "dtmf", "reply", "link")
ACK_CHANNEL: dict[AckRule, Channel | None] = {
    "none": None, "dtmf": "voice", "reply": "sms", "link": "email",
}
MAX_STEPS = 10
MAX_TEMPLATE = 5000
STEP_FIELDS = ("channel", "templates", "retries", "retry_interval_s", "ack", "ack_timeout_s")


def parse_step(data: Any, where: str) -> ChannelStep:
    if not isinstance(data, dict):
        raise invalid(where, "must be an object")
    f = Fields(data, STEP_FIELDS, where)
    channel = f.req_str("channel", 10)
    if channel not in CHANNELS:
        raise invalid(f.path("channel"), f"must be one of {', '.join(CHANNELS)}")
    templates_in = f.obj("templates")
    templates: dict[str, str] = {}
    for language, template in templates_in.items():
        path = f"{f.path('templates')}.{language}"
        code, problem = check_language(language)
        if problem is not None or code is None or code != language:
            raise invalid(path, problem or "language codes are lower case")
        if not isinstance(template, str) or not template.strip():
            raise invalid(path, "must be a non-empty string")
        if len(template) > MAX_TEMPLATE:
            raise invalid(path, f"longer than {MAX_TEMPLATE} characters")
        templates[code] = template
    if "fr" not in templates:
        raise invalid(f"{f.path('templates')}.fr", "required (French is the fallback language)")
    ack = f.opt_str("ack", 10) or "none"
    if ack not in ACK_RULES:
        raise invalid(f.path("ack"), f"must be one of {', '.join(ACK_RULES)}")
    rule: AckRule = ack
    needs = ACK_CHANNEL[rule]
    if needs is not None and needs != channel:
        raise invalid(f.path("ack"), f"'{rule}' acknowledgement is only possible on {needs}")
    return ChannelStep(
        channel=channel, templates=templates,
        retries=f.integer("retries", 1, 0, 10),
        retry_interval_s=f.number("retry_interval_s", 2.0, 0.1, 3600.0),
        ack=rule,
        ack_timeout_s=f.number("ack_timeout_s", 60.0, 1.0, 86400.0),
    )


def parse_scenario(data: dict[str, Any]) -> ScenarioIn:
    f = Fields(data, ("name", "steps", "priority"))
    name, problem = check_name(f.req_str("name", 100), 100)
    if problem is not None or name is None:
        raise invalid("name", problem or "required")
    if "/" in name:
        raise invalid("name", "contains '/'")
    steps = tuple(
        parse_step(step, f"steps[{i}]")
        for i, step in enumerate(f.array("steps", 1, MAX_STEPS))
    )
    return ScenarioIn(name=name, steps=steps, priority=f.integer("priority", 5, 1, 9))


async def create_scenario(request: web.Request) -> web.Response:
    scenario = parse_scenario(await read_json_object(request))
    store = context(request).store
    try:
        await store.get_scenario(scenario.name)
    except NotFound:
        pass
    else:
        raise ApiError(409, f"scenario {scenario.name!r} already exists", "name")
    created = await store.create_scenario(scenario)
    return json_response(scenario_json(created), 201,
                         {"Location": f"{API}/scenarios/{quote(created.name, safe='')}"})


async def list_scenarios(request: web.Request) -> web.Response:
    check_query(request, ())
    scenarios = await context(request).store.list_scenarios()
    return json_response({"items": [scenario_json(s) for s in scenarios]})


async def get_scenario(request: web.Request) -> web.Response:
    check_query(request, ())
    scenario = await context(request).store.get_scenario(request.match_info["name"])
    return json_response(scenario_json(scenario))


_STEP_PROPERTIES: JSON = {
    "channel": {"enum": list(CHANNELS)},
    "templates": {
        "type": "object", "required": ["fr"], "minProperties": 1,
        "description": "message text per ISO 639-1 language; 'fr' is required (fallback)",
        "additionalProperties": {"type": "string", "maxLength": MAX_TEMPLATE,
                                 "pattern": "\\S"},
        "propertyNames": {"pattern": "^[a-z]{2}$"},
    },
    "retries": nullable({"type": "integer", "minimum": 0, "maximum": 10, "default": 1}),
    "retry_interval_s": nullable({"type": "number", "minimum": 0.1, "maximum": 3600,
                                  "default": 2.0}),
    "ack": nullable({"enum": list(ACK_RULES), "default": "none",
                     "description": "dtmf only on voice, reply only on sms, link only on "
                                    "email"}),
    "ack_timeout_s": nullable({"type": "number", "minimum": 1, "maximum": 86400,
                               "default": 60.0}),
}

SCHEMAS: dict[str, JSON] = {
    "StepIn": {
        "type": "object", "additionalProperties": False, "required": ["channel", "templates"],
        "properties": _STEP_PROPERTIES,
    },
    "Step": {
        "type": "object", "required": list(STEP_FIELDS), "properties": _STEP_PROPERTIES,
    },
    "ScenarioIn": {
        "type": "object", "additionalProperties": False, "required": ["name", "steps"],
        "properties": {
            "name": text(100, exclude="/"),
            "steps": {"type": "array", "minItems": 1, "maxItems": MAX_STEPS,
                      "items": ref("StepIn"), "description": "fallback order"},
            "priority": nullable({"type": "integer", "minimum": 1, "maximum": 9, "default": 5,
                                  "description": "1 is the highest"}),
        },
    },
    "Scenario": {
        "type": "object", "required": ["id", "name", "priority", "steps"],
        "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"},
            "priority": {"type": "integer"},
            "steps": {"type": "array", "items": ref("Step")},
        },
    },
}

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", f"{API}/scenarios", create_scenario, "write", "createScenario",
              "Create a scenario", "scenarios", {201: Resp("created", ref("Scenario"))},
              body=Body("application/json", ref("ScenarioIn")), errors=(409,),
              checked=("steps[].templates", "steps[].ack")),
    RouteSpec("GET", f"{API}/scenarios", list_scenarios, "read", "listScenarios",
              "List scenarios", "scenarios", {200: Resp("all scenarios", list_of("Scenario"))}),
    RouteSpec("GET", f"{API}/scenarios/{{name}}", get_scenario, "read", "getScenario",
              "Get one scenario by name", "scenarios", {200: Resp("the scenario",
                                                                  ref("Scenario"))},
              params=(Param("name", "path", {"type": "string"}, "scenario name", True),)),
)
