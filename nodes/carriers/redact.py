"""Masking of personal data before it reaches a log line: phone numbers keep their last two
digits, e-mail addresses their first character and their domain."""

from __future__ import annotations


def mask_phone(number: str) -> str:
    """``+33612345678`` -> ``+*********78``: every digit but the last two is masked."""
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
    local, sep, domain = address.rpartition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_address(address: str) -> str:
    """An e-mail address or a phone number, masked either way."""
    return mask_email(address) if "@" in address else mask_phone(address)
