"""The nodes' side of drills, kept in the continuity ledger: approvals, accepted runs, the
records (signed by the node's site key) and the follow-up of their findings, and the schedule.

Entries (details carry the keys ``Ledger.last_of_kind`` / ``of_kind`` search on, as strings):

* ``drill.approved``: ``drill``, ``approver``, ``approver_role``, ``expires_at``;
* ``drill.started``: ``run_id``, ``drill``, ``runner``, ``approver``, and ``approval`` (the
  approval's seq) or ``approved_by``;
* ``drill.record``: the signed record (``records.py``), ``record_id``, ``drill_type``,
  ``outcome``;
* ``drill.finding``: a finding's new state, signed, ``record_id``, ``drill``;
* ``drill.abort_requested``: ``run_id`` (or null), ``by``, ``reason``.

A real run needs an approval by someone other than the runner: an approval entry for that drill
(not expired, not used by another run), or ``approved_by``, a user the API knows, with a role that
may approve, who is not the runner. Who is who comes from the API's principal
(``nodes/api/identity.py``): the runner and the approver named in the record are what the API
authenticated, never what the client says.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from failover.evidence.keys import parse_verifier
from failover.evidence.records import RecordError, validate, verify_envelope
from failover.evidence.service import EvidenceService, NoSiteKey

RUN_ID = re.compile(r"[a-z][a-z0-9-]{0,60}-\d{8}T\d{6}Z\Z")
DEFAULT_APPROVAL_S = 24 * 3600.0
MIN_APPROVAL_S = 60.0
MAX_APPROVAL_S = 7 * 24 * 3600.0
APPROVAL = re.compile(r"[0-9]{1,18}\Z")  # a ledger seq (bigint), ASCII digits
STATUSES = ("open", "in_progress", "done")


class DrillBookError(Exception):
    """Refused: ``status`` is the HTTP status the API answers with, ``field`` the field."""

    def __init__(self, status: int, field: str, problem: str) -> None:
        self.status = status
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True)
class Caller:
    """Who calls, as the API authenticated them (``nodes/api/identity.py``)."""

    identity: str
    role: str


KnownApprover = Callable[[str], str | None]  # identity -> its role, None if unknown


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


class DrillBook:
    def __init__(self, evidence: EvidenceService, *, kinds: Callable[[], set[str]],
                 approver_roles: tuple[str, ...] = ("operator", "oncall"),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.evidence = evidence
        self.ledger = evidence.ledger
        self.kinds = kinds
        self.approver_roles = approver_roles
        self.clock = clock

    def _kind(self, drill: Any) -> str:
        known = self.kinds()
        if not isinstance(drill, str) or drill not in known:
            raise DrillBookError(422, "drill", f"unknown drill {drill!r} (drills: "
                                 f"{', '.join(sorted(known))})")
        return drill

    async def _append(self, kind: str, sentence: str, caller: Caller,
                      details: dict[str, Any]) -> int:
        return await self.ledger.append(kind, sentence, actor=caller.identity,
                                        node=self.evidence.node, site=self.evidence.site,
                                        details=details)

    # --- approvals --------------------------------------------------------------------------
    async def approve(self, drill: Any, caller: Caller, valid_for_s: float | None
                      ) -> dict[str, Any]:
        kind = self._kind(drill)
        if caller.role not in self.approver_roles:
            raise DrillBookError(403, "role", f"role {caller.role} may not approve a drill "
                                 f"(roles: {', '.join(self.approver_roles)})")
        span = DEFAULT_APPROVAL_S if valid_for_s is None else float(valid_for_s)
        if not MIN_APPROVAL_S <= span <= MAX_APPROVAL_S:
            raise DrillBookError(422, "valid_for_s", f"must be between {MIN_APPROVAL_S:.0f} "
                                 f"and {MAX_APPROVAL_S:.0f} seconds")
        expires = _iso(self.clock() + timedelta(seconds=span))
        seq = await self._append("drill.approved", f"drill {kind} approved by "
                                 f"{caller.identity} until {expires}", caller,
                                 {"drill": kind, "approver": caller.identity,
                                  "approver_role": caller.role, "expires_at": expires})
        return {"approval": str(seq), "drill": kind, "approver": caller.identity,
                "expires_at": expires}

    async def _approval_by(self, kind: str, approval: str, runner: Caller) -> str:
        if not APPROVAL.match(approval):  # str.isdigit() takes '²', which int() refuses
            raise DrillBookError(422, "approval", "must be the number an approval returned")
        entries = await self.ledger.entries(int(approval), int(approval) + 1)
        doc = entries[0].doc() if entries else {}
        details = doc.get("details") or {}
        if doc.get("kind") != "drill.approved":
            raise DrillBookError(403, "approval", f"{approval} is not a drill approval")
        if details.get("drill") != kind:
            raise DrillBookError(403, "approval", f"approval {approval} is for drill "
                                 f"{details.get('drill')}, not {kind}")
        if datetime.fromisoformat(str(details["expires_at"])) < self.clock():
            raise DrillBookError(403, "approval", f"approval {approval} expired at "
                                 f"{details['expires_at']}")
        approver = str(details.get("approver"))
        if approver == runner.identity:
            raise DrillBookError(403, "approval", f"approval {approval} was given by "
                                 f"{approver}, who runs the drill: a drill needs the approval "
                                 "of someone else")
        used = await self.ledger.last_of_kind("drill.started", approval=approval)
        if used is not None:
            raise DrillBookError(409, "approval", f"approval {approval} was used by drill "
                                 f"{used.doc().get('details', {}).get('run_id')}")
        return approver

    def _named_approver(self, name: str, runner: Caller, known: KnownApprover) -> str:
        role = known(name)
        if role is None:
            raise DrillBookError(403, "approved_by", f"{name!r} is not a user of this API")
        if role not in self.approver_roles:
            raise DrillBookError(403, "approved_by", f"{name} has role {role}, which may not "
                                 f"approve a drill (roles: {', '.join(self.approver_roles)})")
        if name == runner.identity:
            raise DrillBookError(403, "approved_by", f"{name} runs the drill: a drill needs "
                                 "the approval of someone else")
        return name

    # --- runs -------------------------------------------------------------------------------
    async def start(self, drill: Any, run_id: Any, caller: Caller, *, approval: Any,
                    approved_by: Any, known: KnownApprover) -> dict[str, Any]:
        """Accept a real run; ``known(name)`` is the role of a user the API knows (None if
        unknown), for ``approved_by``."""
        kind = self._kind(drill)
        if not isinstance(run_id, str) or not RUN_ID.match(run_id) \
                or not run_id.startswith(f"{kind}-"):
            raise DrillBookError(422, "run_id", f"must be {kind}-YYYYMMDDTHHMMSSZ")
        if await self.ledger.last_of_kind("drill.started", run_id=run_id) is not None:
            raise DrillBookError(409, "run_id", f"drill {run_id} was already started")
        if approval is not None and approved_by is not None:
            raise DrillBookError(422, "approval", "give an approval or approved_by, not both")
        details: dict[str, Any] = {"run_id": run_id, "drill": kind, "runner": caller.identity}
        if isinstance(approval, str | int) and not isinstance(approval, bool):
            details["approver"] = await self._approval_by(kind, str(approval), caller)
            details["approval"] = str(approval)
        elif isinstance(approved_by, str) and approved_by:
            details["approver"] = self._named_approver(approved_by, caller, known)
            details["approved_by"] = approved_by
        else:
            raise DrillBookError(403, "approval", "a real drill needs the approval of someone "
                                 "other than its runner: an approval (tenir drill approve, by "
                                 "another user) or approved_by")
        await self._append("drill.started", f"drill {run_id} started by {caller.identity}, "
                           f"approved by {details['approver']}", caller, details)
        return {"run_id": run_id, "drill": kind, "runner": caller.identity,
                "approver": details["approver"]}

    async def started(self, run_id: str) -> dict[str, Any]:
        entry = await self.ledger.last_of_kind("drill.started", run_id=run_id)
        if entry is None:
            raise DrillBookError(404, "run_id", f"no drill {run_id} was started")
        return dict(entry.doc().get("details") or {})

    async def store_record(self, run_id: str, record: Any, caller: Caller) -> int:
        run = await self.started(run_id)
        if await self.ledger.last_of_kind("drill.record", record_id=run_id) is not None:
            raise DrillBookError(409, "id", f"drill {run_id} already has its record")
        if not isinstance(record, dict):
            raise DrillBookError(422, "record", "must be a JSON object")
        if record.get("type", "drill") != "drill":
            raise DrillBookError(422, "type", f"is {record.get('type')!r}: a drill run's record "
                                 "is of type drill")
        for key, want in (("id", run_id), ("drill_type", run["drill"]),
                          ("runner", run["runner"]), ("approver", run["approver"])):
            if record.get(key, want) != want:
                raise DrillBookError(422, key, f"is {record.get(key)!r}, but drill {run_id} "
                                     f"was started with {want!r}")
        body = {**record, "type": "drill", "id": run_id, "drill_type": run["drill"],
                "runner": run["runner"], "approver": run["approver"]}
        try:
            return await self.evidence.record(body, caller.identity)
        except RecordError as exc:
            raise DrillBookError(422, exc.field, exc.problem) from None
        except NoSiteKey as exc:
            raise DrillBookError(503, "record", f"{exc}: the record cannot be signed here (the "
                                 "runner keeps it; tenir drill record FILE stores it later)"
                                 ) from None

    # --- records and findings ---------------------------------------------------------------
    def _verifiers(self) -> list[Any]:
        keys = [parse_verifier(k) for k in self.evidence.keys]
        if self.evidence.signer is not None:
            keys.append(self.evidence.signer.verifier)
        return keys

    async def record(self, run_id: str) -> dict[str, Any]:
        """The drill's record, its signature checked, with its findings as their follow-ups
        leave them and the follow-up records themselves."""
        entry = await self.ledger.last_of_kind("drill.record", record_id=run_id)
        if entry is None:
            raise DrillBookError(404, "id", f"drill {run_id} has no record")
        try:
            verified = verify_envelope(entry.doc()["details"]["envelope"], self._verifiers())
        except RecordError as exc:
            raise DrillBookError(500, "record", f"the record in entry {entry.seq} does not "
                                 f"verify: {exc}") from None
        follow_ups = []
        for e in await self.ledger.of_kind("drill.finding", drill=run_id):
            try:
                follow_ups.append(verify_envelope(e.doc()["details"]["envelope"],
                                                  self._verifiers()).record)
            except RecordError as exc:
                raise DrillBookError(500, "finding", f"entry {e.seq} does not verify: "
                                     f"{exc}") from None
        from failover.evidence.report import findings_of

        rec = dict(verified.record)
        return {"record": rec, "seq": entry.seq, "signed_by": verified.signed_by,
                "findings": findings_of([rec], follow_ups), "follow_ups": follow_ups}

    async def add_finding(self, run_id: str, body: Any, caller: Caller) -> dict[str, Any]:
        current = await self.record(run_id)
        if not isinstance(body, dict):
            raise DrillBookError(422, "finding", "must be a JSON object")
        ids = [int(f["id"][1:]) for f in current["findings"] if str(f["id"])[1:].isdigit()]
        finding = {"id": f"F{max(ids, default=0) + 1}",
                   "criticality": body.get("criticality"),
                   "description": body.get("description"),
                   "corrective_action": {**(body.get("corrective_action") or {}),
                                         "status": "open"}}
        return await self._follow_up(current["record"], finding, caller)

    async def update_finding(self, run_id: str, finding_id: str, status: Any, note: Any,
                             caller: Caller) -> dict[str, Any]:
        current = await self.record(run_id)
        found = next((f for f in current["findings"] if f["id"] == finding_id), None)
        if found is None:
            raise DrillBookError(404, "finding", f"drill {run_id} has no finding {finding_id}")
        if status not in STATUSES:
            raise DrillBookError(422, "status", f"must be one of {', '.join(STATUSES)}")
        finding = {k: v for k, v in found.items()
                   if k in ("id", "criticality", "description", "corrective_action")}
        finding["corrective_action"] = {**finding["corrective_action"], "status": status}
        if isinstance(note, str) and note.strip():
            finding["corrective_action"]["note"] = note.strip()[:2000]
        return await self._follow_up(current["record"], finding, caller)

    async def _follow_up(self, drill_record: dict[str, Any], finding: dict[str, Any],
                         caller: Caller) -> dict[str, Any]:
        record = {"type": "finding", "id": f"{drill_record['id']}/{finding['id']}/"
                  f"{self.clock().strftime('%Y%m%dT%H%M%S%fZ')}",
                  "drill_type": drill_record["drill_type"], "drill": drill_record["id"],
                  "scope": {"description": f"follow-up of drill {drill_record['id']}"},
                  "at": _iso(self.clock()), "by": caller.identity, "finding": finding}
        try:
            validate(record)
            seq = await self.evidence.record(record, caller.identity)
        except RecordError as exc:
            raise DrillBookError(422, exc.field.removeprefix("finding."), exc.problem) from None
        except NoSiteKey as exc:
            raise DrillBookError(503, "finding", str(exc)) from None
        return {"seq": seq, "finding": finding}

    async def abort_requested(self, run_id: str | None, reason: str, caller: Caller) -> int:
        return await self._append("drill.abort_requested", f"abort of drill "
                                  f"{run_id or '(whichever runs)'} requested by "
                                  f"{caller.identity}: {reason}", caller,
                                  {"run_id": run_id, "by": caller.identity, "reason": reason})
