"""The JSON Schema of a record as ``POST /api/v1/evidence/records`` takes it (a drill, an incident,
a drill planned, a finding's follow-up), and of a drill's record as its run sends it
(``POST /api/v1/drills/runs/{run_id}/record``): member by member what
``failover/evidence/records.py`` (``validate``) accepts, one schema per record type, and for a
drill one per kind of outcome (none, passed or failed, aborted: what its measures may leave
null). Members a record type does not name are kept and signed as sent; every number in a record
is within +/-(2**53 - 1) (what any JSON reader holds exactly).

What JSON Schema cannot say is checked beyond it (a 422 naming the field, listed in the
operation's ``x-checked-beyond-schema``): an ``ended_at`` before its ``started_at``; for a run's
record, members that differ from what the run was started with.
"""

from __future__ import annotations

from failover.evidence import times
from failover.evidence.records import (
    ACTION_STATUS,
    CRITICALITY,
    MARK_KINDS,
    MAX_NUMBER,
    MAX_TEXT,
    OUTCOMES,
    VERDICTS,
)
from nodes.api.spec import JSON, filled, nullable, ref

CHECKED = ("ended_at", "steps[].ended_at")
# what POST /drills/runs/{run_id}/record fills in, and refuses when it differs
FROM_THE_RUN = ("id", "drill_type", "runner", "approver")
RUN_CHECKED = (*FROM_THE_RUN, *CHECKED)

TEXT: JSON = filled(MAX_TEXT)
TIME: JSON = {**times.SCHEMA, "maxLength": MAX_TEXT}
NUMBER: JSON = {"type": "number", "minimum": 0, "maximum": MAX_NUMBER}
MEASURE: JSON = nullable(NUMBER)  # null: not measured


def _obj(required: tuple[str, ...], others: JSON | None = None, **properties: JSON) -> JSON:
    """An object with ``properties``; the members it does not name are ``others`` (any JSON
    value by default)."""
    return {"type": "object", "required": list(required), "properties": properties,
            "additionalProperties": ref("RecordValue") if others is None else others}


def _array(items: JSON) -> JSON:
    return {"type": "array", "items": items}


_SCOPE = _obj(("description",), description=TEXT, sites=_array({"type": "string"}))
# rto_s and rpo_s, and further targets or measures (numbers, null when not measured)
_TARGETS = _obj(("rto_s", "rpo_s"), MEASURE, rto_s=NUMBER, rpo_s=NUMBER)
# a drill's measures, passed or failed; aborted (and an incident's): all optional
_JUDGED = _obj(("rto_s", "rpo_s"), MEASURE, rto_s=MEASURE, rpo_s=MEASURE)
_OPTIONAL = _obj((), MEASURE, rto_s=MEASURE, rpo_s=MEASURE)
_STEP = _obj(("name", "started_at", "ended_at"), name=TEXT, started_at=TIME, ended_at=TIME,
             outcome=nullable(TEXT), detail=nullable(TEXT))
_VERDICT = _obj(("invariant", "verdict"), invariant=TEXT, verdict={"enum": list(VERDICTS)},
                detail=nullable(TEXT))
_ACTION = _obj(("description", "owner", "status"), description=TEXT, owner=TEXT,
               due=nullable(TIME), status={"enum": list(ACTION_STATUS)})
_FINDING = _obj(("id", "criticality", "description", "corrective_action"), id=TEXT,
                criticality={"enum": list(CRITICALITY)}, description=TEXT,
                corrective_action=_ACTION)
_CAMPAIGNS = _array({"type": "integer", "minimum": 1, "maximum": MAX_NUMBER})
_POINT: JSON = {"type": "array", "minItems": 2, "maxItems": 2,
                "items": {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER},
                "description": "[seconds from the start, deliveries per second]"}
_TIMELINE = _obj(
    ("series",), series={"type": "object", "additionalProperties": _array(_POINT),
                         "description": "site -> its points"},
    marks=_array(_obj(("at_s", "kind", "label"), at_s=NUMBER,
                      kind={"enum": list(MARK_KINDS)}, label=TEXT)))


def _record(rtype: str, required: tuple[str, ...], description: str, *,
            filled_in: tuple[str, ...] = (), **properties: JSON) -> JSON:
    """Record type ``rtype``; the members in ``filled_in`` may be left out (the node fills
    them in)."""
    common = ("type", "id", "drill_type", "scope")
    needed = tuple(k for k in (*common, *required) if k not in filled_in)
    schema = _obj(needed, type={"const": rtype}, id=TEXT, drill_type=TEXT, scope=_SCOPE,
                  **properties)
    return {**schema, "description": description}


def _happened(rtype: str, outcome: JSON, measured: JSON, required: tuple[str, ...],
              description: str, filled_in: tuple[str, ...] = (), **properties: JSON) -> JSON:
    """A drill performed or a real incident: its times, steps, targets and measures."""
    return _record(
        rtype, ("targets", "measured", "started_at", "ended_at", "steps", *required),
        description, filled_in=filled_in, targets=_TARGETS, measured=measured,
        started_at=TIME, ended_at=TIME, steps=_array(_STEP), verdicts=_array(_VERDICT),
        findings=_array(_FINDING), timeline=_TIMELINE, campaigns_in_flight=_CAMPAIGNS,
        outcome=outcome, reason=nullable(TEXT), **properties)


def drill_record(filled_in: tuple[str, ...] = ()) -> JSON:
    """A drill performed: without an outcome its measures are numbers; passed or failed, the
    RTO and RPO may be null (not measured) but are there; aborted, they may be left out."""
    judged = [o for o in OUTCOMES if o != "aborted"]
    kinds = (({"type": "null"}, (), _TARGETS, "without an outcome"),
             ({"enum": judged}, ("outcome",), _JUDGED, "passed or failed"),
             ({"const": "aborted"}, ("outcome",), _OPTIONAL, "aborted"))
    return {"description": "a drill performed", "oneOf": [
        _happened("drill", outcome, measured, ("approver", "runner", "verdicts", *required),
                  f"a drill performed, {what}", filled_in, approver=TEXT, runner=TEXT)
        for outcome, required, measured, what in kinds]}


SCHEMAS: dict[str, JSON] = {
    "RecordValue": {
        "description": f"any JSON value whose numbers are within +/-{MAX_NUMBER}",
        "anyOf": [{"type": ["string", "boolean", "null"]},
                  {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER},
                  {"type": "array", "items": ref("RecordValue")},
                  {"type": "object", "additionalProperties": ref("RecordValue")}],
    },
    "DrillRecord": drill_record(),
    "DrillRunRecord": {**drill_record(FROM_THE_RUN), "description": (
        "a drill's record as its run sends it: id, drill_type, runner and approver may be left "
        "out (the node sets them from the run's start, and refuses them when they differ)")},
    "IncidentRecord": _happened("incident", nullable({"enum": list(OUTCOMES)}),
                                _OPTIONAL, (), "a real incident"),
    "ScheduleRecord": _record("schedule", ("due",), "a drill planned", due=TIME),
    "FindingRecord": _record("finding", ("drill", "at", "finding"),
                             "a finding of a drill in its new state (its follow-up)",
                             drill=TEXT, at=TIME, finding=_FINDING),
}
SCHEMAS["EvidenceRecord"] = {
    "description": "a drill, incident, schedule or finding record (docs/evidence.md)",
    "oneOf": [ref(f"{rtype}Record") for rtype in ("Drill", "Incident", "Schedule", "Finding")],
}
