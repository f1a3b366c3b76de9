"""JSON-lines logging to stderr for the simulator process.

Fields passed through ``extra=`` become keys of the line. Callers mask personal data themselves
(:mod:`nodes.carriers.redact`); as a second line of defence, any value under a key that names a
secret is replaced, values under address keys are masked, and the message, the traceback and
every other string go through the node's bounded, linear-time redaction (phone numbers, e-mail
addresses, tokens).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final

from nodes.carriers.redact import mask_address, redact_text

_STANDARD: Final = frozenset(logging.LogRecord(
    "", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
_SECRET_KEYS: Final = frozenset({"password", "secret", "token", "authorization"})
_ADDRESS_KEYS: Final = frozenset({"to", "from", "source", "destination", "msisdn", "phone"})


class JsonFormatter(logging.Formatter):
    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
            **self._static,
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if key.lower() in _SECRET_KEYS:
                value = "***"
            elif key.lower() in _ADDRESS_KEYS and isinstance(value, str) and "*" not in value:
                value = mask_address(value)
            elif isinstance(value, str):
                value = redact_text(value)
            line[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            line["error"] = redact_text(repr(record.exc_info[1]))
            line["traceback"] = redact_text(self.formatException(record.exc_info), 8192)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(level: str = "INFO", static: dict[str, Any] | None = None) -> None:
    """Route the root logger to stderr as JSON lines; quiet the libraries' chatty loggers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(static))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiosmtpd logs peers and, at debug, message content; aiohttp logs every request.
    for noisy in ("mail.log", "aiohttp.access", "aiohttp.server", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
