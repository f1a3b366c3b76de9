"""The continuity evidence, read-only for auditors: ledger entries, signed checkpoints,
inclusion and consistency proofs, bundles and reports (any role may read). Recording a drill
or incident record is an operator's write (``POST /evidence/records``): the node validates it,
signs it with its site key (in-toto Statement in DSSE) and appends it to the ledger.
"""

from __future__ import annotations

import base64
from datetime import datetime

from aiohttp import web

from failover.evidence import times
from failover.evidence.bundle import entry_json
from failover.evidence.records import RecordError
from failover.evidence.render import FORMATS
from failover.evidence.service import EvidenceService, NoSiteKey, ProofRequestError
from nodes.api import record_schema
from nodes.api.bodies import check_query, query_int, read_json_object, required_query_int
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
    """The time in parameter ``name``; None when it is absent (present but empty is refused)."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return times.parse(raw)
    except ValueError as exc:
        raise invalid(name, str(exc)) from None


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
    seq = required_query_int(request, "seq", 0, MAX_SEQ)
    size = required_query_int(request, "size", 1, MAX_SEQ)
    try:
        proof = await _service(request).inclusion(seq, size)
    except ProofRequestError as exc:
        raise invalid(exc.field, exc.problem) from None
    return json_response({"seq": seq, "size": size, "proof": _b64(proof)})


async def consistency_proof(request: web.Request) -> web.Response:
    check_query(request, ("old", "new"))
    old = required_query_int(request, "old", 0, MAX_SEQ)
    new = required_query_int(request, "new", 0, MAX_SEQ)
    try:
        proof = await _service(request).consistency(old, new)
    except ProofRequestError as exc:
        raise invalid(exc.field, exc.problem) from None
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


def _proof(*sizes: str) -> JSON:
    return {"type": "object", "required": [*sizes, "proof"],
            "properties": {**{n: {"type": "integer"} for n in sizes},
                           "proof": {"type": "array", "items": {"type": "string"},
                                     "description": "the hashes, base64"}}}


SCHEMAS: dict[str, JSON] = {
    **record_schema.SCHEMAS,
    "EvidenceRecorded": {"type": "object", "required": ["seq"],
                         "properties": {"seq": {"type": "integer"}}},
    "InclusionProof": _proof("seq", "size"),
    "ConsistencyProof": _proof("old", "new"),
}


def _int(name: str, lo: int, description: str, default: int | None = None) -> Param:
    """An integer from ``lo`` to MAX_SEQ; required unless it has a default."""
    schema: JSON = {"type": "integer", "minimum": lo, "maximum": MAX_SEQ}
    if default is not None:
        schema["default"] = default
    return Param(name, "query", schema, description, default is None)


_RANGE = (Param("from", "query", times.SCHEMA, "entries appended from this time"),
          Param("to", "query", times.SCHEMA, "entries appended before this time"))
_REPORT = Resp("the report (format json, html or pdf)", _OBJ,
               others={CONTENT["html"]: {"type": "string"},
                       CONTENT["pdf"]: {"type": "string", "contentMediaType": CONTENT["pdf"]}})

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", f"{API}/evidence/entries", list_entries, "read", "listLedgerEntries",
              "Ledger entries from a sequence number", "evidence",
              {200: Resp("entries (payload base64, hashes hex)", _LIST)},
              params=(_int("start", 0, "first seq", 0),
                      Param("limit", "query", {"type": "integer", "minimum": 1,
                                               "maximum": 1000, "default": 100}, "how many"))),
    RouteSpec("GET", f"{API}/evidence/checkpoints", list_checkpoints, "read",
              "listCheckpoints", "Signed, witness-cosigned checkpoints", "evidence",
              {200: Resp("checkpoints (c2sp signed notes)", _LIST)}),
    RouteSpec("GET", f"{API}/evidence/proofs/inclusion", inclusion_proof, "read",
              "inclusionProof", "RFC 6962 inclusion proof of an entry", "evidence",
              {200: Resp("the proof", ref("InclusionProof"))},
              params=(_int("seq", 0, "the entry; less than size"),
                      _int("size", 1, "the tree: its first size entries, at most the "
                                      "ledger's")),
              checked=("seq", "size")),
    RouteSpec("GET", f"{API}/evidence/proofs/consistency", consistency_proof, "read",
              "consistencyProof", "RFC 6962 consistency proof between two sizes", "evidence",
              {200: Resp("the proof (empty when old is 0 or equals new)",
                         ref("ConsistencyProof"))},
              params=(_int("old", 0, "the older tree's size; at most new"),
                      _int("new", 0, "the newer tree's size; at most the ledger's")),
              checked=("old", "new")),
    RouteSpec("GET", f"{API}/evidence/bundle", get_bundle, "read", "getEvidenceBundle",
              "An evidence bundle to verify offline", "evidence",
              {200: Resp("manifest, entries, records", _OBJ)}, params=_RANGE),
    RouteSpec("GET", f"{API}/evidence/report", get_report, "read", "getEvidenceReport",
              "The continuity report (json, html or pdf)", "evidence", {200: _REPORT},
              params=(*_RANGE, Param("format", "query", {"enum": list(FORMATS),
                                                         "default": "json"}, "format"))),
    RouteSpec("POST", f"{API}/evidence/records", add_record, "write", "addEvidenceRecord",
              "Sign a drill or incident record with the site key and append it", "evidence",
              {201: Resp("appended", ref("EvidenceRecorded"))},
              body=Body("application/json", ref("EvidenceRecord")),
              checked=record_schema.CHECKED),
)
