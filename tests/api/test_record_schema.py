"""The document's record schemas (``nodes/api/record_schema.py``) say exactly what
``failover/evidence/records.py`` (``validate``) accepts, per record type, the drills' additions
included (outcome and reason, nullable measures, the timeline, steps' details, finding records):
records as the drill runner and the book write them, then each addition broken, are accepted or
refused by both alike (validate naming the field); then bodies that schemathesis draws from the
document, valid and invalid, for ``POST /evidence/records`` and for a run's record
(``POST /drills/runs/{run_id}/record``, checked by the drills' book on a started run)."""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode

from failover.drills.book import Caller, DrillBook, DrillBookError
from failover.evidence.records import RecordError, validate
from failover.evidence.service import EvidenceService
from nodes.api import record_schema
from nodes.api.context import CONTEXT
from nodes.metrics import Metrics
from tests.api.conftest import EVIDENCE_SITE_KEY, make_app
from tests.evidence_kit import T0 as PLANNED
from tests.evidence_kit import schedule, synthetic_drill
from tests.fakes.memory_store import MemoryStore

# The hand-made records are unit tests; schemathesis's draws take about a minute on two
# busy cores, with the other schemathesis tests (test_schemathesis.py).
DRAWN = pytest.mark.integration

DOCUMENT: dict[str, Any] = make_app(MemoryStore(), Metrics())[CONTEXT].openapi
OPERATIONS = schemathesis.openapi.from_dict(DOCUMENT)
RUN_ID = "lose-primary-site-20261120T090000Z"
FILLED = {"type": "drill", "id": RUN_ID, "drill_type": "lose-primary-site", "runner": "bob",
          "approver": "alice"}


def schema_of(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                 "components": DOCUMENT["components"]})


RECORD = schema_of("EvidenceRecord")
RUN_RECORD = schema_of("DrillRunRecord")


def field_refused(record: Any) -> str | None:
    """The field validate names, None when it accepts the record."""
    try:
        validate(record)
    except RecordError as exc:
        return exc.field
    return None


def beyond_schema(field: str | None) -> bool:
    """Whether ``field`` is one the document says is checked beyond it (or None)."""
    return field is None or re.sub(r"\[\d+\]", "[]", field) in record_schema.CHECKED


def run_drill() -> dict[str, Any]:
    """A drill's record as ``failover/drills/record.py`` builds it: an outcome, measures that
    may be null, steps with details, the timeline."""
    r = synthetic_drill()
    r |= {"outcome": "failed", "reason": "rpo: 1 outcome lost",
          "measured": {"rto_s": 21.4, "rpo_s": None, "lost": 1, "complete_s": None},
          "targets": {"rto_s": 60, "rpo_s": 0, "lost": 0, "complete_s": None},
          "timeline": {"series": {"paris": [[0, 0.0], [1.5, 310.2]], "marseille": []},
                       "marks": [{"at_s": 2.1, "kind": "fault", "label": "paris cut"}]}}
    r["steps"][0]["detail"] = "announced to 3 people"
    return r


def follow_up() -> dict[str, Any]:
    """A finding's follow-up as the book writes it."""
    return {"type": "finding", "id": f"{RUN_ID}/F1/20261121T090000000000Z",
            "drill_type": "lose-primary-site", "drill": RUN_ID,
            "scope": {"description": f"follow-up of drill {RUN_ID}"},
            "at": "2026-11-21T09:00:00+00:00", "by": "alice",
            "finding": {"id": "F1", "criticality": "high", "description": "late SMS",
                        "corrective_action": {"description": "pre-stage it", "owner": "ops",
                                              "status": "in_progress", "note": "on it"}}}


def incident() -> dict[str, Any]:
    r = synthetic_drill("incident-1") | {"type": "incident", "outcome": "passed",
                                         "measured": {"rpo_s": None}}
    for k in ("approver", "runner", "verdicts"):
        del r[k]
    return r


Change = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Change:
    def change(r: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = r
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[last] = value
    return change


def _drop(path: str) -> Change:
    def change(r: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = r
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        del node[last]
    return change


KEPT: list[tuple[str, Callable[[], dict[str, Any]], Change | None]] = [
    ("a drill as the runner writes it", run_drill, None),
    ("a drill without an outcome (its measures numbers)", synthetic_drill, None),
    ("passed, the RPO not measured", run_drill, _set("outcome", "passed")),
    ("aborted before it measured anything", run_drill,
     lambda r: r.update(outcome="aborted", measured={})),
    ("a null reason", run_drill, _set("reason", None)),
    ("a step's null detail", run_drill, _set("steps.1.detail", None)),
    ("a timeline without marks", run_drill, _drop("timeline.marks")),
    ("an incident with an outcome, measures optional", incident, None),
    ("a schedule", lambda: schedule("plan-1", PLANNED), None),
    ("a finding's follow-up", follow_up, None),
    ("a follow-up's null due time", follow_up, _set("finding.corrective_action.due", None)),
]
REFUSED: list[tuple[str, Callable[[], dict[str, Any]], Change]] = [
    ("measured.rpo_s", synthetic_drill, _set("measured.rpo_s", None)),  # no outcome: a number
    ("measured.rto_s", run_drill, _drop("measured.rto_s")),  # failed: there, maybe null
    ("measured.lost", run_drill, _set("measured.lost", -1)),
    ("targets.lost", run_drill, _set("targets.lost", "0")),
    ("outcome", run_drill, _set("outcome", "ok")),
    ("outcome", incident, _set("outcome", "")),
    ("reason", run_drill, _set("reason", " ")),
    ("steps[0].detail", run_drill, _set("steps.0.detail", "")),
    ("timeline", run_drill, _set("timeline", None)),
    ("timeline.series", run_drill, _drop("timeline.series")),
    ("timeline.series.paris", run_drill, _set("timeline.series.paris", [[1]])),
    ("timeline.series.paris", run_drill, _set("timeline.series.paris", [[1, True]])),
    ("timeline.marks", run_drill, _set("timeline.marks", None)),
    ("timeline.marks[0].kind", run_drill, _set("timeline.marks.0.kind", "boom")),
    ("timeline.marks[0].at_s", run_drill, _set("timeline.marks.0.at_s", -1)),
    ("timeline.marks[0].label", run_drill, _drop("timeline.marks.0.label")),
    ("verdicts", incident, _set("verdicts", None)),
    ("verdicts", run_drill, _drop("verdicts")),
    ("at", follow_up, _drop("at")),
    ("drill", follow_up, _set("drill", "")),
    ("finding.corrective_action.status", follow_up,
     _set("finding.corrective_action.status", "closed")),
    ("finding.corrective_action.due", follow_up,
     _set("finding.corrective_action.due", "tomorrow")),
    ("finding", follow_up, _drop("finding")),
    ("type", follow_up, _set("type", "findings")),
]


@pytest.mark.unit
@pytest.mark.parametrize(("what", "make", "change"), KEPT, ids=[w for w, _, _ in KEPT])
def test_records_validate_keeps_the_document_admits(what: str, make: Callable[[], Any],
                                                    change: Change | None) -> None:
    record = make()
    if change is not None:
        change(record)
    assert field_refused(record) is None
    assert RECORD.is_valid(record), [e.message for e in RECORD.iter_errors(record)]


@pytest.mark.unit
@pytest.mark.parametrize(("field", "make", "change"), REFUSED,
                         ids=[f"{f}:{i}" for i, (f, _, _) in enumerate(REFUSED)])
def test_records_validate_refuses_the_document_refuses(field: str, make: Callable[[], Any],
                                                       change: Change) -> None:
    record = make()
    change(record)
    assert field_refused(record) == field
    assert not RECORD.is_valid(record)


RECORDS, RUN_RECORDS = "/api/v1/evidence/records", "/api/v1/drills/runs/{run_id}/record"
Test = Callable[..., None]


def drawn(path: str, mode: GenerationMode, examples: int) -> Callable[[Test], Test]:
    """The test given the bodies schemathesis draws for ``POST path`` (valid or invalid)."""
    def wrap(test: Test) -> Test:
        strategy = OPERATIONS[path]["POST"].as_strategy(generation_mode=mode)
        tested = settings(max_examples=examples, deadline=None, derandomize=True,
                          database=None, suppress_health_check=list(HealthCheck))(test)
        return DRAWN(given(case=strategy)(tested))  # type: ignore[no-any-return]
    return wrap


@drawn(RECORDS, GenerationMode.POSITIVE, 100)
def test_every_record_the_document_admits_is_valid(case: schemathesis.Case) -> None:
    assert RECORD.is_valid(case.body)
    refused = field_refused(case.body)
    assert beyond_schema(refused), (refused, case.body)


@drawn(RECORDS, GenerationMode.NEGATIVE, 100)
def test_every_record_the_document_refuses_is_refused(case: schemathesis.Case) -> None:
    assume(not RECORD.is_valid(case.body))
    assert field_refused(case.body) is not None, case.body


class RunBook:
    """The drills' book on an in-memory ledger, with run ``RUN_ID`` started (bob runs it,
    alice approved it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        store = MemoryStore()
        evidence = EvidenceService(store.ledger, "tenir.invalid/t", "paris-node1", "paris",
                                   EVIDENCE_SITE_KEY)
        self.book = DrillBook(evidence, kinds=lambda: {"lose-primary-site"},
                              clock=lambda: datetime(2026, 11, 20, 9, tzinfo=UTC))
        self.loop = loop
        self.loop.run_until_complete(self.book.start(
            "lose-primary-site", RUN_ID, Caller("bob", "oncall"), approval=None,
            approved_by="alice", known=lambda name: "operator" if name == "alice" else None))

    def store(self, body: Any) -> int:
        return self.loop.run_until_complete(
            self.book.store_record(RUN_ID, copy.deepcopy(body), Caller("bob", "oncall")))


@pytest.fixture(scope="module")
def book() -> Iterator[RunBook]:
    loop = asyncio.new_event_loop()
    try:
        yield RunBook(loop)
    finally:
        loop.close()


@drawn(RUN_RECORDS, GenerationMode.POSITIVE, 60)
def test_a_runs_record_the_document_admits_is_valid_once_the_node_fills_it_in(
        case: schemathesis.Case, book: RunBook) -> None:
    assert RUN_RECORD.is_valid(case.body)
    body = dict(case.body)
    # what it says about the run is what the run was started with, or refused by name
    mismatch = [k for k, v in FILLED.items() if body.get(k, v) != v]
    refused = field_refused(body | FILLED)
    assert beyond_schema(refused), (refused, body)
    assert set(mismatch) <= set(record_schema.FROM_THE_RUN)
    if mismatch:
        with pytest.raises(DrillBookError) as exc:
            book.store(body)
        assert (exc.value.status, exc.value.field) == (422, mismatch[0])


@drawn(RUN_RECORDS, GenerationMode.NEGATIVE, 60)
def test_a_runs_record_the_document_refuses_is_refused_by_the_book(
        case: schemathesis.Case, book: RunBook) -> None:
    assume(not RUN_RECORD.is_valid(case.body))
    with pytest.raises(DrillBookError) as exc:
        book.store(case.body)
    assert exc.value.status == 422, (exc.value, case.body)
