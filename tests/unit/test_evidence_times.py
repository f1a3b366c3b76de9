"""The evidence API's times: what ``times.parse`` accepts is exactly what its published schema
(RFC 3339 ``date-time`` and the pattern) admits, as the validator schemathesis uses judges it."""

from __future__ import annotations

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failover.evidence import times

pytestmark = pytest.mark.unit

VALIDATOR = jsonschema_rs.validator_for(times.SCHEMA, validate_formats=True)


def accepted(value: str) -> bool:
    try:
        times.parse(value)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("value", [
    "2026-11-20T09:00:00Z", "2026-11-20T09:00:00.5+01:00", "2000-02-29T23:59:59.123456789-00:00",
    "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59Z",
])
def test_times_the_schema_admits_are_parsed(value: str) -> None:
    assert VALIDATOR.is_valid(value) and accepted(value)


@pytest.mark.parametrize("value", [
    "", "2026-11-20", "2026-11-20T09:00Z", "2026-11-20 09:00:00Z", "2026-11-20T09:00:00",
    "2026-11-20t09:00:00z", "20261120T090000Z", "2026-11-20T09:00:00+0100",
    "2026-11-20T09:00:00.Z", "2026-11-20T09:00:00,5Z", "2026-11-20T09:00:00Z\n",
    "2026-02-29T09:00:00Z", "2026-11-20T24:00:00Z", "2026-11-20T09:60:00Z",
    "2026-12-31T23:59:60Z", "2026-11-20T09:00:00+24:00", "0000-01-01T00:00:00Z",
    "\uff12\uff10\uff12\uff16-11-20T09:00:00Z",  # full-width digits
])
def test_anything_else_is_refused_by_both(value: str) -> None:
    assert not VALIDATOR.is_valid(value)
    with pytest.raises(ValueError, match=r"RFC 3339|not a time"):
        times.parse(value)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.from_regex(times.PATTERN, fullmatch=True) | st.datetimes(
    timezones=st.timezones()).map(lambda t: t.isoformat()) | st.text(max_size=40))
def test_the_parser_and_the_schema_agree(value: str) -> None:
    assert accepted(value) == VALIDATOR.is_valid(value)
