"""Drill and incident records (the drill schedule, and the follow-up of a drill's findings) as
in-toto Statements v1 in DSSE envelopes signed with the writing site's key.

A record is validated here (every error names the field), wrapped in a Statement whose
subject is ``tenir:<type>/<id>`` with the SHA-256 of the canonical predicate, signed as DSSE
(``securesystemslib.dsse``, PAE over the payload type below) and appended to the ledger as an
entry of kind ``drill.record``, ``incident.record``, ``drill.scheduled`` or ``drill.finding``
whose details carry the envelope. A drill (``failover/drills/``) writes its record through
``POST /api/v1/drills/runs/{id}/record``, a finding's follow-up through
``POST /api/v1/drills/records/{id}/findings``; both end in :func:`append_record`.

A drill record may carry, beside the fields every record has: ``outcome`` (passed, failed or
aborted) and ``reason``; further measures in ``targets`` and ``measured`` (numbers, or null for
what was not measured: an aborted drill may have no RTO, a drill without a store observer no
RPO; with an ``outcome``, ``measured.rto_s`` and ``rpo_s`` may be null but must be there);
``timeline`` (``series``: site -> ``[[seconds from the start, deliveries/s], ...]``, ``marks``:
``{at_s, kind, label}``).
A finding record names the drill (``drill``: its record id) and carries one ``finding`` in its
new state (a corrective action's status moving to in_progress or done).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer._crypto_signer import CryptoSigner
from securesystemslib.signer._key import SSlibKey

from failover.evidence import times
from failover.evidence.entry import canonical_json
from failover.evidence.keys import Signer, Verifier
from failover.evidence.ledger import Ledger

PAYLOAD_TYPE = "application/vnd.tenir.continuity+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://tenir.invalid/continuity-record/v1"
RECORD_TYPES = ("drill", "incident", "schedule", "finding")
KIND_OF = {"drill": "drill.record", "incident": "incident.record", "schedule": "drill.scheduled",
           "finding": "drill.finding"}
OUTCOMES = ("passed", "failed", "aborted")
MARK_KINDS = ("fault", "heal", "watchdog", "postgres", "coordination", "stop", "step")
CRITICALITY = ("low", "medium", "high", "critical")
ACTION_STATUS = ("open", "in_progress", "done")
VERDICTS = ("pass", "fail", "not_checked")
MAX_TEXT = 2000
MAX_NUMBER = 2**53 - 1  # a measure or a campaign id: what every JSON reader holds exactly


class RecordError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class _Fields:
    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise RecordError(where or "record", "must be a JSON object")
        self.data, self.where = data, where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def text(self, key: str, *, required: bool = True, choices: tuple[str, ...] = ()) -> str:
        v = self.data.get(key)
        if v is None and not required:
            return ""
        if not isinstance(v, str) or not v.strip() or len(v) > MAX_TEXT:
            raise RecordError(self._name(key), f"must be a non-empty string ({MAX_TEXT} at most)")
        if choices and v not in choices:
            raise RecordError(self._name(key), f"must be one of {', '.join(choices)}")
        return v

    def time(self, key: str, *, required: bool = True) -> str:
        v = self.text(key, required=required)
        if v:
            try:
                times.parse(v)
            except ValueError as exc:
                raise RecordError(self._name(key), str(exc)) from None
        return v

    def num(self, key: str, *, required: bool = True, nullable: bool = False) -> float | None:
        v = self.data.get(key)
        if v is None and (not required or (nullable and key in self.data)):
            return None
        if v is None:
            raise RecordError(self._name(key), f"must be a number from 0 to {MAX_NUMBER}"
                              + (" (or null: not measured)" if nullable else ""))
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= MAX_NUMBER:
            raise RecordError(self._name(key), f"must be a number from 0 to {MAX_NUMBER}")
        return float(v)

    def items(self, key: str, *, required: bool = True) -> list[_Fields]:
        v = self.data.get(key, None if required else [])
        if not isinstance(v, list):
            raise RecordError(self._name(key), "must be a list")
        return [_Fields(x, f"{self._name(key)}[{i}]") for i, x in enumerate(v)]

    def sub(self, key: str) -> _Fields:
        return _Fields(self.data.get(key), self._name(key))


def _numbers_in_range(record: dict[str, Any]) -> None:
    """Every number of the record, in the members it names and in the others, within
    +/-MAX_NUMBER: a signed record reads the same in any JSON reader."""
    stack: list[tuple[Any, str]] = [(record, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            stack += [(v, f"{path}.{k}" if path else k) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, f"{path}[{i}]") for i, v in enumerate(value)]
        elif isinstance(value, int | float) and not isinstance(value, bool) \
                and not -MAX_NUMBER <= value <= MAX_NUMBER:
            raise RecordError(path, f"must be a number from -{MAX_NUMBER} to {MAX_NUMBER}")


def _finding(finding: _Fields) -> None:
    finding.text("id")
    finding.text("criticality", choices=CRITICALITY)
    finding.text("description")
    action = finding.sub("corrective_action")
    action.text("description")
    action.text("owner")
    action.time("due", required=False)
    action.text("status", choices=ACTION_STATUS)


def _measures(f: _Fields, known: tuple[str, ...], required: bool,
              nullable: bool = False) -> None:
    for key in known:
        f.num(key, required=required, nullable=nullable)
    for key in f.data:
        if key not in known:
            f.num(key, required=False)


def _timeline(f: _Fields) -> None:
    series = f.sub("series")
    for site, points in series.data.items():
        if not isinstance(points, list) or not all(
                isinstance(p, list) and len(p) == 2
                and all(isinstance(x, int | float) and not isinstance(x, bool) for x in p)
                for p in points):
            raise RecordError(f"timeline.series.{site}", "must be a list of [seconds, rate]")
    for mark in f.items("marks", required=False):
        mark.num("at_s")
        mark.text("kind", choices=MARK_KINDS)
        mark.text("label")


def validate(record: Any) -> dict[str, Any]:
    """The record as it will be signed, or :class:`RecordError` naming the field at fault."""
    f = _Fields(record, "")
    _numbers_in_range(f.data)
    rtype = f.text("type", choices=RECORD_TYPES)
    f.text("id")
    f.text("drill_type")
    scope = f.sub("scope")
    scope.text("description")
    sites = scope.data.get("sites", [])
    if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
        raise RecordError("scope.sites", "must be a list of site names")
    if rtype == "schedule":
        f.time("due")
        return dict(record)
    if rtype == "finding":
        f.text("drill")
        f.time("at")
        _finding(f.sub("finding"))
        return dict(record)
    outcome = f.text("outcome", required=False, choices=OUTCOMES)
    f.text("reason", required=False)
    _measures(f.sub("targets"), ("rto_s", "rpo_s"), True)
    # a drill says what it measured, null for what it could not (an aborted drill may have
    # no RTO; without a store observer there is no RPO)
    _measures(f.sub("measured"), ("rto_s", "rpo_s") if rtype == "drill" else (),
              rtype == "drill" and outcome != "aborted", nullable=bool(outcome))
    if rtype == "drill":
        f.text("approver")
        f.text("runner")
    start, end = f.time("started_at"), f.time("ended_at")
    if datetime.fromisoformat(end) < datetime.fromisoformat(start):
        raise RecordError("ended_at", "is before started_at")
    for step in f.items("steps"):
        step.text("name")
        s, e = step.time("started_at"), step.time("ended_at")
        if datetime.fromisoformat(e) < datetime.fromisoformat(s):
            raise RecordError(f"{step.where}.ended_at", "is before started_at")
        step.text("outcome", required=False)
        step.text("detail", required=False)
    for v in f.items("verdicts", required=rtype == "drill"):
        v.text("invariant")
        v.text("verdict", choices=VERDICTS)
        v.text("detail", required=False)
    for finding in f.items("findings", required=False):
        _finding(finding)
    if "timeline" in record:
        _timeline(f.sub("timeline"))
    campaigns = record.get("campaigns_in_flight", [])
    if not isinstance(campaigns, list) or not all(_campaign_id(c) for c in campaigns):
        raise RecordError("campaigns_in_flight", "must be a list of campaign ids")
    body = dict(record)
    if "campaigns_in_flight" in body:
        body["campaigns_in_flight"] = [int(c) for c in campaigns]  # 7.0 is 7, as in JSON Schema
    return body


def _campaign_id(c: Any) -> bool:
    integral = isinstance(c, int) or (isinstance(c, float) and c.is_integer())
    return integral and not isinstance(c, bool) and 1 <= c <= MAX_NUMBER


def statement(record: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256(canonical_json(record)).hexdigest()
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": f"tenir:{record['type']}/{record['id']}",
                         "digest": {"sha256": digest}}],
            "predicateType": PREDICATE_TYPE, "predicate": record}


def _sslib_key(v: Verifier) -> SSlibKey:
    return SSlibKey.from_crypto(Ed25519PublicKey.from_public_bytes(v.public),
                                keyid=f"{v.name}+{v.key_id.hex()}")


def sign_record(record: Any, signer: Signer) -> dict[str, Any]:
    """Validate, wrap in a Statement, sign as DSSE; the envelope as JSON."""
    body = validate(record)
    envelope = Envelope(canonical_json(statement(body)), PAYLOAD_TYPE, {})
    envelope.sign(CryptoSigner(signer.private, _sslib_key(signer.verifier)))
    return dict(envelope.to_dict())


@dataclass(frozen=True)
class VerifiedRecord:
    record: dict[str, Any]
    signed_by: str  # key name + id


def verify_envelope(envelope: Any, keys: list[Verifier]) -> VerifiedRecord:
    """Check the DSSE signature (one trusted key suffices), the payload type, the Statement and
    its subject digest; the record inside. Raises :class:`RecordError` saying what failed."""
    if not isinstance(envelope, dict):
        raise RecordError("envelope", "must be a DSSE envelope object")
    try:
        env = Envelope.from_dict(json.loads(json.dumps(envelope)))
    except (KeyError, ValueError, TypeError) as exc:
        raise RecordError("envelope", f"not a DSSE envelope ({exc})") from exc
    if env.payload_type != PAYLOAD_TYPE:
        raise RecordError("envelope.payloadType", f"is {env.payload_type!r}, not {PAYLOAD_TYPE}")
    try:
        accepted = env.verify([_sslib_key(k) for k in keys], 1)
    except VerificationError as exc:
        raise RecordError("envelope.signatures", f"no valid signature by a trusted key ({exc})"
                          ) from exc
    try:
        st = json.loads(env.payload)
    except ValueError as exc:
        raise RecordError("envelope.payload", "is not JSON") from exc
    if st.get("_type") != STATEMENT_TYPE or st.get("predicateType") != PREDICATE_TYPE:
        raise RecordError("envelope.payload", "is not a tenir continuity Statement v1")
    record = st.get("predicate")
    validate(record)
    want = hashlib.sha256(canonical_json(record)).hexdigest()
    if st.get("subject", [{}])[0].get("digest", {}).get("sha256") != want:
        raise RecordError("envelope.payload.subject", "digest does not match the predicate")
    return VerifiedRecord(record, ", ".join(sorted(accepted)))


async def append_record(ledger: Ledger, record: Any, signer: Signer, *, actor: str, node: str,
                        site: str) -> int:
    """Validate, sign and append a record; returns its ledger sequence number."""
    envelope = sign_record(record, signer)
    body = validate(record)
    rtype = body["type"]
    if rtype == "schedule":
        when = f"due {body['due']}"
    elif rtype == "finding":
        state = body["finding"]["corrective_action"]["status"]
        when = f"finding {body['finding']['id']} of drill {body['drill']}: {state}"
    else:
        when = f"{body['started_at']} to {body['ended_at']}"
    sentence = f"{rtype} {body['id']} ({body['drill_type']}) recorded: {when}"
    # what the ledger is searched by (Ledger.last_of_kind matches details)
    keys = {"record_id": body["id"], "drill_type": body["drill_type"]}
    if body.get("outcome"):
        keys["outcome"] = body["outcome"]
    if rtype == "finding":
        keys["drill"] = body["drill"]
    return await ledger.append(KIND_OF[rtype], sentence, actor=actor, node=node, site=site,
                               details={**keys, "envelope": envelope})


def decode_payload(envelope: dict[str, Any]) -> dict[str, Any]:
    """The Statement inside an envelope, unverified (for display after verification)."""
    return dict(json.loads(base64.b64decode(envelope["payload"])))


__all__ = ["PAYLOAD_TYPE", "RecordError", "VerifiedRecord", "append_record",
           "sign_record", "validate", "verify_envelope"]
