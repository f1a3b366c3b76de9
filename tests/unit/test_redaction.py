"""Redaction for logs: e-mail addresses masked as well as phone numbers, every string cut to a
bound before it is scanned, a cut that never leaves part of a number or address in clear, and
repeated library records (EMFILE) bounded. Its time on adversarial input is measured by
``bench/redaction.py``."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from nodes.carriers.redact import mask_email, mask_phone
from nodes.carriers.sim.jsonlog import JsonFormatter as SimFormatter
from nodes.log_limits import RepeatLimit
from nodes.redaction import MAX_DEPTH, MAX_ITEMS, MAX_KEY, MAX_TEXT, redact, redact_value

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "masked", "hidden"), [
    ("to jeanne.martin@mairie-lyon.fr now", "to j***@mairie-lyon.fr now", "jeanne.martin"),
    ("<agent12+astreinte@sdis13.example.fr>", "<a***@sdis13.example.fr>", "agent12"),
    ('{"email": "x.y_z@example.org"}', '{"email": "x***@example.org"}', "x.y_z"),
    ("0612345678@sms.example.net", "0***@sms.example.net", "612345678"),
])
def test_email_addresses_keep_their_first_character_and_domain(
    text: str, masked: str, hidden: str,
) -> None:
    assert redact(text) == masked
    assert hidden not in redact(text)


@pytest.mark.parametrize("text", ["a @ b", "user@localhost", "@example.org", "1@2", "x@"])
def test_what_is_not_an_address_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_long_strings_are_cut_before_they_are_scanned() -> None:
    out = redact("x" * 100_000)
    assert len(out) < MAX_TEXT + 40
    assert out.endswith("more characters]")
    assert redact("y" * 100, limit=10) == "...[100 more characters]"  # all of it could be a token


@pytest.mark.parametrize("secret", ["+33 6 12 34 56 78", "jeanne.martin@mairie-lyon.fr",
                                    "Bearer abcdefghijklmnopqrstuvwxyz0123456789"])
def test_a_cut_never_leaves_part_of_a_number_address_or_token(secret: str) -> None:
    secret_digits = re.sub(r"\D", "", secret)
    for shift in range(len(secret) + 1):
        text = "z, " * 400 + secret + " and more"
        limit = 1200 + shift  # the cut falls everywhere across the secret
        out = redact(text, limit)
        assert len(out) <= limit + 40
        clear = out.replace("*", "")
        assert secret[2:12] not in clear, (shift, out[-80:])
        if len(secret_digits) > 4:
            assert secret_digits[2:7] not in re.sub(r"\D", "", out[-60:]), (shift, out[-80:])


def test_values_are_bounded_in_keys_items_and_depth() -> None:
    nested: object = "leaf"
    for _ in range(MAX_DEPTH + 5):
        nested = [nested]
    out = redact_value({"k" * 10_000: 1, "deep": nested, "many": list(range(500)),
                        "big": 10**400, "api_token": "x"})
    keys = list(out)
    assert all(len(k) <= MAX_KEY + 40 for k in keys)
    assert len(out["many"]) == MAX_ITEMS + 1 and out["many"][-1] == "... 450 more"
    assert "[nested too deep]" in json.dumps(out["deep"])
    assert out["big"] == "[a large integer]"
    assert out["api_token"] == "[REDACTED]"


def test_carrier_masks_are_bounded() -> None:
    assert mask_phone("+33612345678") == "+*********78"
    assert mask_phone("1" * 10_000) == "***"
    assert mask_email("a" * 10_000 + "@example.org") == "***"
    assert mask_email("jeanne@example.org") == "j***@example.org"


def test_simulator_log_lines_are_redacted_too() -> None:
    record = logging.LogRecord("tenir.sim.smtp", logging.WARNING, __file__, 1,
                               "relay refused %s, token=%s", ("jeanne@example.org", "s3cr3t"),
                               None)
    record.detail = "call +33612345678 back"
    line = json.loads(SimFormatter({"site": "paris"}).format(record))
    assert line["msg"] == "relay refused j***@example.org, token=[REDACTED]"
    assert line["detail"] == "call +*********78 back"


def test_repeated_library_records_are_bounded_and_counted() -> None:
    now = [0.0]
    stream = io.StringIO()
    logger = logging.getLogger("tenir.test.flood")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s %(suppressed)s", defaults={
        "suppressed": "-"}))
    logger.addHandler(handler)
    logger.propagate = False
    logger.addFilter(RepeatLimit(burst=3, window_s=60, clock=lambda: now[0]))
    try:
        for _ in range(10_000):
            logger.error("socket.accept() out of system resource")
        logger.error("another message")
        now[0] = 61.0
        logger.error("socket.accept() out of system resource")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines == ["socket.accept() out of system resource -"] * 3 + [
        "another message -", "socket.accept() out of system resource 9997"]
