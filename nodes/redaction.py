"""Redaction of personal data and secrets from text bound for a log line, in linear time.

:func:`redact` runs on every string of every log record (``nodes/logs.py``, the simulator's
``jsonlog``), whatever its source, including a request's path or a JSON key an attacker chose.
So it must never take more than linear time, and never hold a record longer than a bound:

* a string longer than ``limit`` characters is cut *before* anything else runs, at a place that
  does not split a phone number, an address or a token (a partial one left at the cut would
  escape the patterns below): the cut backs off over up to ``_CUT_BACKOFF`` characters that
  could belong to one, and says how many characters were left out;
* no pattern can backtrack over more than a bounded window: keys are found by a pattern anchored
  at the start of a word, values and addresses by bounded or single-pass matches, each scan
  resuming where the previous match ended.

What is masked:

* ``Bearer <token>``, and ``password=``/``token:``/``"secret": "..."`` values (any key whose name
  contains password, secret, token, api key, authorization or credentials) become ``[REDACTED]``;
* e-mail addresses keep the first character of their local part and their domain
  (``j***@example.org``);
* phone numbers (E.164 ``+33612345678``, international ``0033 6 ...``, French national
  ``06 12 34 56 78`` with spaces, dots or dashes, SMPP's ``33612345678``) keep only their last two
  digits.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

REDACTED: Final = "[REDACTED]"
MAX_TEXT: Final = 2048  # characters of one string kept in a log record
MAX_KEY: Final = 64  # characters of a field name kept in a log record
MAX_ITEMS: Final = 50  # items of a list or mapping kept in a log record
MAX_DEPTH: Final = 6  # nesting of lists and mappings kept in a log record
_CUT_BACKOFF: Final = 320  # longer than any phone number, e-mail address or token we mask

# -- secrets -----------------------------------------------------------------------------------
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9\-._~+/]+=*")
_SENSITIVE = re.compile(
    r"(?i)password|passwd|pwd|secret|token|api[_-]?key|authorization|credential")
# A key starts a word (the look-behind keeps the scan from retrying inside one), then a
# separator; its value is matched separately, and only when the key is sensitive.
_KEY_SEP = re.compile(r"(?<![\w-])([\w-]+)([\"']?\s*[=:]\s*)")
_VALUE = re.compile(r"\"[^\"]{0,1024}\"?|'[^']{0,1024}'?|[^\s,;&\"'}]+")

# -- e-mail addresses --------------------------------------------------------------------------
_DOMAIN = re.compile(r"[\w-]+(?:\.[\w-]+)+")
_LOCAL_CHARS = frozenset("!#$%&'*+/=?^_`{|}~.-")

# -- phone numbers -----------------------------------------------------------------------------
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


def _is_tail_char(ch: str) -> bool:
    """Could ``ch`` be part of a phone number, an e-mail address or a token?"""
    return ch.isalnum() or ch in " .+-_()@%=/~:'\"\t"


def _cut(text: str, limit: int) -> int:
    cut = limit
    floor = max(0, limit - _CUT_BACKOFF)
    while cut > floor and _is_tail_char(text[cut - 1]):
        cut -= 1
    return cut


def _mask_secrets(text: str) -> str:
    text = _BEARER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    out: list[str] = []
    pos = 0  # everything before pos is in out
    scan = 0
    while True:
        m = _KEY_SEP.search(text, scan)
        if m is None:
            break
        scan = m.end()
        if _SENSITIVE.search(m.group(1)) is None:
            continue
        value = _VALUE.match(text, m.end())
        if value is None or value.group(0).startswith(REDACTED):
            continue
        out.append(text[pos:m.end()])
        out.append(REDACTED)
        pos = scan = value.end()
    out.append(text[pos:])
    return "".join(out)


def mask_email_address(local: str, domain: str) -> str:
    return f"{local[:1]}***@{domain}"


def _mask_emails(text: str) -> str:
    out: list[str] = []
    pos = 0
    at = text.find("@")
    while at != -1:
        domain = _DOMAIN.match(text, at + 1)
        start = at
        while start > pos and (text[start - 1].isalnum() or text[start - 1] in _LOCAL_CHARS):
            start -= 1
        if domain is None or start == at:
            at = text.find("@", at + 1)
            continue
        out.append(text[pos:start])
        out.append(mask_email_address(text[start:at], domain.group(0)))
        pos = domain.end()
        at = text.find("@", pos)
    out.append(text[pos:])
    return "".join(out)


def _mask_phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = [c for c in text if c.isdigit()]
    prefix = "+" if text.startswith("+") else ""
    return prefix + "*" * (len(digits) - 2) + "".join(digits[-2:])


def redact(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` with secrets removed, e-mail addresses and phone numbers masked, and cut to
    about ``limit`` characters (the cut says how many were left out)."""
    tail = ""
    if len(text) > limit:
        cut = _cut(text, limit)
        tail = f"...[{len(text) - cut} more characters]"
        text = text[:cut]
    text = _mask_secrets(text)
    text = _mask_emails(text)
    return _PHONE.sub(_mask_phone, text) + tail


def _short_key(key: str) -> str:
    return key if len(key) <= MAX_KEY else redact(key, MAX_KEY)


def redact_value(value: Any, key: str | None = None, depth: int = 0) -> Any:
    """A JSON-able copy of ``value`` with every string redacted and bounded, secret-named keys
    removed, and at most ``MAX_ITEMS`` items per level, ``MAX_DEPTH`` levels deep."""
    if key is not None and _SENSITIVE.search(key[:MAX_KEY]):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):  # a phone number kept as an integer: 33612345678
        if abs(value) >= 10**18:
            return "[a large integer]"
        text = str(value)
        masked = redact(text)
        return value if masked == text else masked
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list | tuple | set | frozenset):
        if depth >= MAX_DEPTH:
            return "[nested too deep]"
        if isinstance(value, dict):
            items = list(value.items())
            out: dict[str, Any] = {}
            for k, v in items[:MAX_ITEMS]:
                name = _short_key(str(k))
                out[name] = redact_value(v, name, depth + 1)
            if len(items) > MAX_ITEMS:
                out["..."] = f"{len(items) - MAX_ITEMS} more"
            return out
        seq = list(value)
        kept: list[Any] = [redact_value(v, None, depth + 1) for v in seq[:MAX_ITEMS]]
        if len(seq) > MAX_ITEMS:
            kept.append(f"... {len(seq) - MAX_ITEMS} more")
        return kept
    return redact(str(value))
