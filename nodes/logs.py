"""Structured JSON logging for the alert node, with redaction of personal data and secrets.

One JSON object per line::

    {"time": "2025-01-01T12:00:00.123Z", "level": "INFO", "logger": "tenir.api.access",
     "message": "...", "node": "paris-1", "site": "paris", "campaign": 12, ...extra fields}

``campaign`` comes from ``extra={"campaign": id}`` or, failing that, from the
:data:`current_campaign` context variable (see :func:`campaign_context`). Every other ``extra=``
field is copied into the object.

Redaction (``nodes/redaction.py``, linear time, every string cut to a bound first) runs on the
message, the exception text and every string of every field, whatever the logger or library
that emitted it: phone numbers keep their last two digits, e-mail addresses their first
character and domain, tokens and passwords become ``[REDACTED]``, and fields whose name says
they are secret (``authorization``, ``password``, ``token``...) are replaced whole.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from nodes.log_limits import limit_flooding_loggers
from nodes.redaction import REDACTED, redact, redact_value

__all__ = ["REDACTED", "JsonFormatter", "campaign_context", "configure_logging",
           "current_campaign", "redact", "redact_value"]

MAX_EXCEPTION_TEXT = 8192  # characters of a traceback kept in a log record

current_campaign: ContextVar[int | None] = ContextVar("tenir_campaign", default=None)


@contextlib.contextmanager
def campaign_context(campaign_id: int | None) -> Iterator[None]:
    """Tag every record logged inside the block (in this task/context) with a campaign id."""
    token = current_campaign.set(campaign_id)
    try:
        yield
    finally:
        current_campaign.reset(token)


# -- formatter ---------------------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__
) | {"message", "asctime", "taskName"}
_RESERVED = ("time", "level", "logger", "message", "node", "site", "campaign")


class JsonFormatter(logging.Formatter):
    """Formats each record as one redacted JSON object on one line."""

    def __init__(self, node: str, site: str) -> None:
        super().__init__()
        self.node = node
        self.site = site

    def format(self, record: logging.LogRecord) -> str:
        campaign = getattr(record, "campaign", None)
        if campaign is None:
            campaign = current_campaign.get()
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ).replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "node": self.node,
            "site": self.site,
            "campaign": redact_value(campaign),
        }
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRS or key in _RESERVED or key.startswith("_"):
                continue
            out[key] = redact_value(value, key)
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info), MAX_EXCEPTION_TEXT)
        elif record.exc_text:
            out["exception"] = redact(record.exc_text, MAX_EXCEPTION_TEXT)
        if record.stack_info:
            out["stack"] = redact(self.formatStack(record.stack_info), MAX_EXCEPTION_TEXT)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(
    node: str, site: str, level: int | str = logging.INFO, stream: TextIO | None = None,
) -> logging.Handler:
    """Send the whole process's logging, as JSON lines, to ``stream`` (stderr by default).

    Replaces the root logger's handlers, so that no library logs around the redaction, and
    bounds the records that asyncio and aiohttp repeat (``nodes/log_limits.py``).
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(node, site))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    limit_flooding_loggers()
    return handler
