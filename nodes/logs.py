"""Structured JSON logging for the alert node, with redaction of personal data and secrets.

One JSON object per line::

    {"time": "2025-01-01T12:00:00.123Z", "level": "INFO", "logger": "tenir.api.access",
     "message": "...", "node": "paris-1", "site": "paris", "campaign": 12, ...extra fields}

``campaign`` comes from ``extra={"campaign": id}`` or, failing that, from the
:data:`current_campaign` context variable (see :func:`campaign_context`). Every other ``extra=``
field is copied into the object.

Redaction runs on the message, the exception text and every string of every field, whatever
the logger or library that emitted it:

* phone numbers (E.164 ``+33612345678``, international ``0033 6 ...``, French national
  ``06 12 34 56 78`` with spaces, dots or dashes) keep only their last two digits;
* ``Bearer <token>``, and ``password=``/``token:``/``secret``... values become ``[REDACTED]``;
* fields whose name says they are secret (``authorization``, ``password``, ``token``...) are
  replaced whole.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

REDACTED = "[REDACTED]"

current_campaign: ContextVar[int | None] = ContextVar("tenir_campaign", default=None)


@contextlib.contextmanager
def campaign_context(campaign_id: int | None) -> Iterator[None]:
    """Tag every record logged inside the block (in this task/context) with a campaign id."""
    token = current_campaign.set(campaign_id)
    try:
        yield
    finally:
        current_campaign.reset(token)


# -- redaction ---------------------------------------------------------------------------------

_SEP = r"[ .\-]?"
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    # E.164 or international with 00, optionally grouped: +33 6 12 34 56 78, 0033612345678
    r"(?:\+|00)[1-9](?:" + _SEP + r"\(?\d\)?){6,14}"
    # French national: 06 12 34 56 78, 06.12.34.56.78, 0612345678
    r"|0[1-9](?:" + _SEP + r"\d{2}){4}"
    # E.164 without its plus, as SMPP addresses carry them: 33612345678
    r"|33[1-9]\d{8}"
    r")(?!\w)"
)
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9\-._~+/]+=*")
_SENSITIVE = r"(?:password|passwd|pwd|secret|token|api[_-]?key|authorization|credentials?)"
_SECRET_KV = re.compile(
    r"(?i)(\b[\w-]*" + _SENSITIVE + r"[\w-]*[\"']?\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,;&\"'}]+)"
)
_SECRET_KEY = re.compile(r"(?i)" + _SENSITIVE)


def _mask_phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = [c for c in text if c.isdigit()]
    prefix = "+" if text.startswith("+") else ""
    return prefix + "*" * (len(digits) - 2) + "".join(digits[-2:])


def _mask_secret_kv(match: re.Match[str]) -> str:
    if match.group(2).startswith(REDACTED):
        return match.group(0)
    return match.group(1) + REDACTED


def redact(text: str) -> str:
    """``text`` with phone numbers masked (last two digits kept) and secrets removed."""
    text = _BEARER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    text = _SECRET_KV.sub(_mask_secret_kv, text)
    return _PHONE.sub(_mask_phone, text)


def redact_value(value: Any, key: str | None = None) -> Any:
    """A JSON-able copy of ``value`` with every string redacted; secret-named keys removed."""
    if key is not None and _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):  # a phone number kept as an integer: 33612345678
        text = str(value)
        masked = redact(text)
        return value if masked == text else masked
    if isinstance(value, dict):
        return {str(k): redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return redact(str(value))


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
            out["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exception"] = redact(record.exc_text)
        if record.stack_info:
            out["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(
    node: str, site: str, level: int | str = logging.INFO, stream: TextIO | None = None,
) -> logging.Handler:
    """Send the whole process's logging, as JSON lines, to ``stream`` (stderr by default).

    Replaces the root logger's handlers, so that no library logs around the redaction.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(node, site))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
