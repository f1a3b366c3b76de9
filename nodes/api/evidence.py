"""The continuity evidence, read-only for auditors: ledger entries, signed checkpoints,
inclusion and consistency proofs, bundles and reports (any role may read). Recording a drill
or incident record is an operator's write (``POST /evidence/records``): the node validates it,
signs it with its site key (in-toto Statement in DSSE) and appends it to the ledger.
"""

from __future__ import annotations

import base64
from datetime import datetime

from aiohttp import web

from failover.evidence import merkle
from failover.evidence.bundle import entry_json
from failover.evidence.records import RecordError
from failover.evidence.render import FORMATS
from failover.evidence.service import EvidenceService, NoSiteKey
from nodes.api.bodies import check_query, query_int, read_json_object
from nodes.api.context import context, principal
from nodes.api.errors import ApiError, invalid, json_response
from nodes.api.spec import API, JSON, Body, Param, Resp, RouteSpec, ref

MAX_SEQ = 2**62
CONTENT = {"json": "application/json", "html": "text/html", "pdf": "application/pdf"}


def _service(request: web.Request) -> EvidenceService:
    svc = context(request).evidence
    if svc is None:
        raise ApiError(503, "continuity evidence is not configured on this node")
    return svc


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        t = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid(name, "must be an ISO 8601 time") from None
    if t.tzinfo is None:
        raise invalid(name, "must carry its time zone (Z or +hh:mm)")
    return t


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(x).decode() for x in items]


async def list_entries(request: web.Request) -> web.Response:
    check_query(request, ("start", "limit"))
    start = query_int(request, "start", 0, 0, MAX_SEQ)
    limit = query_int(request, "limit", 100, 1, 1000)
    entries = await _service(request).ledger.entries(start, start + limit)
    return json_response({"items": [entry_json(e, True) for e in entries]})


async def list_checkpoints(request: web.Request) -> web.Response:
    check_query(request, ())
    cps = await _service(request).ledger.checkpoints()
    return json_response({"items": [{"size": c.size, "root": c.root.hex(), "note": c.note}
                                    for c in cps]})


async def inclusion_proof(request: web.Request) -> web.Response:
    check_query(request, ("seq", "size"))
    seq, size = query_int(request, "seq", 0, 0, MAX_SEQ), query_int(request, "size", 1, 1, MAX_SEQ)
    try:
        proof = await _service(request).inclusion(seq, size)
    except merkle.ProofError as exc:
        raise invalid("seq", str(exc)) from None
    return json_response({"seq": seq, "size": size, "proof": _b64(proof)})


async def consistency_proof(request: web.Request) -> web.Response:
    check_query(request, ("old", "new"))
    old, new = query_int(request, "old", 0, 0, MAX_SEQ), query_int(request, "new", 1, 1, MAX_SEQ)
    try:
        proof = await _service(request).consistency(old, new)
    except merkle.ProofError as exc:
        raise invalid("new", str(exc)) from None
    return json_response({"old": old, "new": new, "proof": _b64(proof)})


async def get_bundle(request: web.Request) -> web.Response:
    check_query(request, ("from", "to"))
    b = await _service(request).bundle(_time(request, "from"), _time(request, "to"))
    return json_response(b.to_json())


async def get_report(request: web.Request) -> web.Response:
    check_query(request, ("from", "to", "format"))
    fmt = request.query.get("format", "json")
    if fmt not in FORMATS:
        raise invalid("format", f"must be one of {', '.join(FORMATS)}")
    body = await _service(request).report(_time(request, "from"), _time(request, "to"), fmt)
    return web.Response(body=body, content_type=CONTENT[fmt])


async def add_record(request: web.Request) -> web.Response:
    record = await read_json_object(request)
    try:
        seq = await _service(request).record(record, principal(request).id)
    except RecordError as exc:
        raise invalid(exc.field, exc.problem) from None
    except NoSiteKey as exc:
        raise ApiError(503, str(exc)) from None
    return json_response({"seq": seq}, 201)


_OBJ: JSON = {"type": "object"}
_LIST: JSON = {"type": "object", "properties": {"items": {"type": "array"}}}
SCHEMAS: dict[str, JSON] = {
    "EvidenceRecord": {
        "type": "object", "required": ["type", "id", "drill_type", "scope"],
        "description": "a drill, incident or schedule record (docs/evidence.md)",
        "properties": {"type": {"enum": ["drill", "incident", "schedule"]},
                       "id": {"type": "string"}, "drill_type": {"type": "string"},
                       "scope": _OBJ, "targets": _OBJ, "measured": _OBJ,
                       "steps": {"type": "array"}, "verdicts": {"type": "array"},
                       "findings": {"type": "array"}},
    },
    "EvidenceRecorded": {"type": "object", "required": ["seq"],
                         "properties": {"seq": {"type": "integer"}}},
    "Proof": {"type": "object", "properties": {"proof": {"type": "array",
                                                         "items": {"type": "string"}}}},
}
_TIME = {"type": "string", "format": "date-time"}
_RANGE = (Param("from", "query", _TIME, "entries appended from this time"),
          Param("to", "query", _TIME, "entries appended before this time"))

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", f"{API}/evidence/entries", list_entries, "read", "listLedgerEntries",
              "Ledger entries from a sequence number", "evidence",
              {200: Resp("entries (payload base64, hashes hex)", _LIST)},
              params=(Param("start", "query", {"type": "integer", "minimum": 0}, "first seq"),
                      Param("limit", "query", {"type": "integer", "minimum": 1,
                                               "maximum": 1000}, "how many"))),
    RouteSpec("GET", f"{API}/evidence/checkpoints", list_checkpoints, "read",
              "listCheckpoints", "Signed, witness-cosigned checkpoints", "evidence",
              {200: Resp("checkpoints (c2sp signed notes)", _LIST)}),
    RouteSpec("GET", f"{API}/evidence/proofs/inclusion", inclusion_proof, "read",
              "inclusionProof", "RFC 6962 inclusion proof of an entry", "evidence",
              {200: Resp("the proof", ref("Proof"))},
              params=(Param("seq", "query", {"type": "integer"}, "entry", True),
                      Param("size", "query", {"type": "integer"}, "tree size", True))),
    RouteSpec("GET", f"{API}/evidence/proofs/consistency", consistency_proof, "read",
              "consistencyProof", "RFC 6962 consistency proof between two sizes", "evidence",
              {200: Resp("the proof", ref("Proof"))},
              params=(Param("old", "query", {"type": "integer"}, "old size", True),
                      Param("new", "query", {"type": "integer"}, "new size", True))),
    RouteSpec("GET", f"{API}/evidence/bundle", get_bundle, "read", "getEvidenceBundle",
              "An evidence bundle to verify offline", "evidence",
              {200: Resp("manifest, entries, records", _OBJ)}, params=_RANGE),
    RouteSpec("GET", f"{API}/evidence/report", get_report, "read", "getEvidenceReport",
              "The continuity report (json, html or pdf)", "evidence",
              {200: Resp("the report", _OBJ)},
              params=(*_RANGE, Param("format", "query", {"enum": list(FORMATS)}, "format"))),
    RouteSpec("POST", f"{API}/evidence/records", add_record, "write", "addEvidenceRecord",
              "Sign a drill or incident record with the site key and append it", "evidence",
              {201: Resp("appended", ref("EvidenceRecorded"))},
              body=Body("application/json", ref("EvidenceRecord"))),
)
