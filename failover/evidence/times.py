"""The times of the evidence API and of records: RFC 3339 date-times (JSON Schema's
``date-time``) in the form every client writes and Python's ``datetime`` holds: upper-case ``T``
and ``Z``, seconds 00 to 59 (no leap second), a year from 0001. :data:`SCHEMA` says exactly
that in the OpenAPI document (the format and a pattern); :func:`parse` accepts exactly that.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_FORM = (f"{_YEAR}-[0-9]{{2}}-[0-9]{{2}}T[0-9]{{2}}:[0-9]{{2}}:[0-5][0-9](?:[.][0-9]+)?"
         "(?:Z|[+-][0-9]{2}:[0-9]{2})")
PATTERN = f"^{_FORM}$"
EXAMPLE = "2026-11-20T09:00:00Z"
SCHEMA: dict[str, Any] = {"type": "string", "format": "date-time", "pattern": PATTERN,
                          "description": f"RFC 3339 with its time zone, such as {EXAMPLE}"}
_RE = re.compile(_FORM)


def parse(value: str) -> datetime:
    """The time ``value`` says, or ValueError saying what is wrong (never repeating it)."""
    if _RE.fullmatch(value) is None:
        raise ValueError(f"must be an RFC 3339 time with its time zone, such as {EXAMPLE}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("is not a time (a month, day, hour, minute or offset out of "
                         "range)") from None
