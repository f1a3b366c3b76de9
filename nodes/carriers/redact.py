"""Masking of personal data before it reaches a log line: phone numbers keep their last two
digits, e-mail addresses their first character and their domain. Inputs are cut to a bound
first (they may come from a request: a 16 KB "number" must not make a 16 KB log line), and
:func:`redact_text` applies the node's linear-time redaction (``nodes/redaction.py``) to free
text such as a message or a traceback."""

from __future__ import annotations

from typing import Final

from nodes.redaction import mask_email_address, redact

MAX_ADDRESS: Final = 254  # the longest e-mail address; far longer than any phone number


def mask_phone(number: str) -> str:
    """``+33612345678`` -> ``+*********78``: every digit but the last two is masked."""
    if len(number) > 32:
        return "***"
    digits_seen = 0
    out: list[str] = []
    for ch in reversed(number):
        if ch.isdigit():
            digits_seen += 1
            out.append(ch if digits_seen <= 2 else "*")
        elif ch == "+":
            out.append(ch)
        else:
            out.append("*")
    return "".join(reversed(out))


def mask_email(address: str) -> str:
    """``jeanne.martin@example.org`` -> ``j***@example.org``."""
    if len(address) > MAX_ADDRESS:
        return "***"
    local, sep, domain = address.rpartition("@")
    if not sep:
        return "***"
    return mask_email_address(local, domain)


def mask_address(address: str) -> str:
    """An e-mail address or a phone number, masked either way."""
    return mask_email(address) if "@" in address else mask_phone(address)


def redact_text(text: str, limit: int = 2048) -> str:
    """Free text with secrets removed, addresses and numbers masked, cut to about ``limit``."""
    return redact(text, limit)
