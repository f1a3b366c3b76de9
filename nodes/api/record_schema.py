"""The JSON Schema of a drill, incident or schedule record as ``POST /api/v1/evidence/records``
takes it: member by member what ``failover/evidence/records.py`` (``validate``) accepts, one
schema per record type. Members a record type does not name are kept and signed as sent; every
number in a record is within +/-(2**53 - 1) (what any JSON reader holds exactly).

What JSON Schema cannot say is checked beyond it (a 422 naming the field, listed in the
operation's ``x-checked-beyond-schema``): an ``ended_at`` before its ``started_at``.
"""

from __future__ import annotations

from failover.evidence import times
from failover.evidence.records import ACTION_STATUS, CRITICALITY, MAX_NUMBER, MAX_TEXT, VERDICTS
from nodes.api.spec import JSON, nullable, ref

CHECKED = ("ended_at", "steps[].ended_at")

# White space as Python's str.isspace() has it (what validate strips), spelt out: ECMA's \s
# and Python's differ (U+001C..U+001F, U+0085, U+FEFF).
SPACE = ("\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f"
         "\\u3000")
TEXT: JSON = {"type": "string", "maxLength": MAX_TEXT, "pattern": f"[^{SPACE}]"}
TIME: JSON = {**times.SCHEMA, "maxLength": MAX_TEXT}
NUMBER: JSON = {"type": "number", "minimum": 0, "maximum": MAX_NUMBER}


def _obj(required: tuple[str, ...], **properties: JSON) -> JSON:
    return {"type": "object", "required": list(required), "properties": properties,
            "additionalProperties": ref("RecordValue")}


def _array(items: JSON) -> JSON:
    return {"type": "array", "items": items}


_SCOPE = _obj(("description",), description=TEXT, sites=_array({"type": "string"}))
_TARGETS = _obj(("rto_s", "rpo_s"), rto_s=NUMBER, rpo_s=NUMBER)
_STEP = _obj(("name", "started_at", "ended_at"), name=TEXT, started_at=TIME, ended_at=TIME,
             outcome=nullable(TEXT))
_VERDICT = _obj(("invariant", "verdict"), invariant=TEXT, verdict={"enum": list(VERDICTS)},
                detail=nullable(TEXT))
_ACTION = _obj(("description", "owner", "status"), description=TEXT, owner=TEXT,
               due=nullable(TIME), status={"enum": list(ACTION_STATUS)})
_FINDING = _obj(("id", "criticality", "description", "corrective_action"), id=TEXT,
                criticality={"enum": list(CRITICALITY)}, description=TEXT,
                corrective_action=_ACTION)
_CAMPAIGNS = _array({"type": "integer", "minimum": 1, "maximum": MAX_NUMBER})


def _record(rtype: str, required: tuple[str, ...], description: str, **properties: JSON) -> JSON:
    schema = _obj(("type", "id", "drill_type", "scope", *required), type={"const": rtype},
                  id=TEXT, drill_type=TEXT, scope=_SCOPE, **properties)
    return {**schema, "description": description}


_HAPPENED = ("targets", "measured", "started_at", "ended_at", "steps")
SCHEMAS: dict[str, JSON] = {
    "RecordValue": {
        "description": f"any JSON value whose numbers are within +/-{MAX_NUMBER}",
        "anyOf": [{"type": ["string", "boolean", "null"]},
                  {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER},
                  {"type": "array", "items": ref("RecordValue")},
                  {"type": "object", "additionalProperties": ref("RecordValue")}],
    },
    "DrillRecord": _record(
        "drill", (*_HAPPENED, "approver", "runner", "verdicts"), "a drill performed",
        targets=_TARGETS, measured=_TARGETS, approver=TEXT, runner=TEXT, started_at=TIME,
        ended_at=TIME, steps=_array(_STEP), verdicts=_array(_VERDICT),
        findings=_array(_FINDING), campaigns_in_flight=_CAMPAIGNS),
    "IncidentRecord": _record(
        "incident", _HAPPENED, "a real incident",
        targets=_TARGETS,
        measured=_obj((), rto_s=nullable(NUMBER), rpo_s=nullable(NUMBER)),
        started_at=TIME, ended_at=TIME, steps=_array(_STEP), verdicts=_array(_VERDICT),
        findings=_array(_FINDING), campaigns_in_flight=_CAMPAIGNS),
    "ScheduleRecord": _record("schedule", ("due",), "a drill planned", due=TIME),
}
SCHEMAS["EvidenceRecord"] = {
    "description": "a drill, incident or schedule record (docs/evidence.md)",
    "oneOf": [ref(f"{rtype}Record") for rtype in ("Drill", "Incident", "Schedule")],
}
