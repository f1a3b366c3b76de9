"""Schemathesis against the node's own OpenAPI document (the one ``GET /api/v1/openapi.json``
serves, built from the route table) and the node served as in production with the in-memory
store: a bounded number of generated requests per operation, valid and invalid, with an
operator's token; every built-in check must pass: no 5xx, and statuses, content types, headers
and bodies as the document says. Each operation has a fresh node: what one writes (hundreds of
fuzzed evidence records) does not weigh on the next (a PDF report of them all would take
minutes); ``test_any_record_the_document_admits_is_reported`` joins those two.

One check is narrowed, as the document says: schema-valid data may be refused with a 422 that
names a field the operation lists in ``x-checked-beyond-schema`` (a phone number checked against
numbering plans, a scenario that must exist): JSON Schema cannot say those; any other 4xx for
schema-valid data is a mismatch."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from nodes.api.context import CONTEXT
from nodes.api.limits import HttpLimits
from nodes.metrics import Metrics
from tests.api.conftest import OPERATOR, make_app
from tests.api.served import ServedNode, served_node
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.integration  # about 15 s

MAX_EXAMPLES = 25  # per operation: about 600 requests in all
# Generous rate limits: the fuzzer sends hundreds of requests, many of them refused.
LIMITS = HttpLimits(public_rate_per_s=10_000, public_burst=10_000, failures_per_s=10_000,
                    failure_burst=10_000)

DOCUMENT: dict[str, Any] = make_app(MemoryStore(), Metrics())[CONTEXT].openapi
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture
def node() -> Iterator[ServedNode]:
    with served_node(LIMITS) as served:
        yield served


def test_the_fuzzed_document_is_the_served_one(node: ServedNode) -> None:
    assert requests.get(f"{node.url}/api/v1/openapi.json", timeout=5).json() == DOCUMENT


def _beyond_schema(case: schemathesis.Case, response: schemathesis.Response) -> bool:
    checked = case.operation.definition.raw.get("x-checked-beyond-schema", [])
    if response.status_code != 422:
        return False
    field = str(response.json().get("field", ""))
    field = re.sub(r"\[\d+\]", "[]", field)
    return any(field == c or field.startswith((f"{c}.", f"{c} ")) for c in checked)


@schemathesis.check
def positive_data_acceptance_but_checked_fields(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case,
) -> bool | None:
    """The built-in check, except for a 422 naming a field checked beyond the schema."""
    if _beyond_schema(case, response):
        return None
    return positive_data_acceptance(ctx, response, case)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_the_api_does_what_its_document_says(case: schemathesis.Case, node: ServedNode) -> None:
    case.call_and_validate(base_url=node.url, headers={"Authorization": f"Bearer {OPERATOR}"},
                           excluded_checks=[positive_data_acceptance],
                           additional_checks=[positive_data_acceptance_but_checked_fields],
                           timeout=10)


RECORDS = schema["/api/v1/evidence/records"]["POST"]


@given(cases=st.lists(RECORDS.as_strategy(), min_size=1, max_size=4))
@settings(max_examples=5, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_any_record_the_document_admits_is_reported(cases: list[schemathesis.Case],
                                                    node: ServedNode) -> None:
    """Records made from the document alone are signed and appended, their signatures verify
    again, and the report of them renders in every format."""
    auth = {"Authorization": f"Bearer {OPERATOR}"}
    appended = 0
    for case in cases:
        resp = case.call(base_url=node.url, headers=auth, timeout=10)
        if resp.status_code == 422 and _beyond_schema(case, resp):
            continue  # an end before its start
        assert resp.status_code == 201, resp.text
        appended += 1
    for fmt in ("json", "html", "pdf"):
        resp = requests.get(f"{node.url}/api/v1/evidence/report?format={fmt}", headers=auth,
                            timeout=60)
        assert resp.status_code == 200, resp.text
    assert resp.content.startswith(b"%PDF")
    verified = requests.get(f"{node.url}/api/v1/evidence/report", headers=auth,
                            timeout=60).json()["verification"]
    assert not [p for p in verified["problems"] if "record" in p]  # no checkpoint here: said
    assert verified["records"] >= appended
