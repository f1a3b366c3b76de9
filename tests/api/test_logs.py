"""Structured JSON logs: one object per line, with node, site and campaign, and no phone
number, token or password in clear."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest

from nodes.logs import JsonFormatter, campaign_context, configure_logging, redact
from tests.api.conftest import OPERATOR, Client, auth

pytestmark = pytest.mark.unit


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


@pytest.mark.parametrize("number", [
    "+33612345678", "+33 6 12 34 56 78", "06 12 34 56 78", "06.12.34.56.78", "06-12-34-56-78",
    "0612345678", "0033 6 12 34 56 78", "0033612345678", "33612345678", "+1 (202) 555-0143",
    "+442079460958",
])
def test_phone_numbers_keep_only_their_last_two_digits(number: str) -> None:
    out = redact(f"calling {number} now")
    assert out.startswith("calling ") and out.endswith(" now")
    masked = out.removeprefix("calling ").removesuffix(" now")
    assert digits(masked) == digits(number)[-2:]


@pytest.mark.parametrize(("text", "secret"), [
    ("Authorization: Bearer abc.DEF-123_xyz==", "abc.DEF-123_xyz"),
    ("header bearer tok3n-value", "tok3n-value"),
    ("password=hunter2&user=bob", "hunter2"),
    ('{"password": "hunter2"}', "hunter2"),
    ("db_password: 's3cr3t pass'", "s3cr3t"),
    ("api_key=AKIA1234", "AKIA1234"),
    ("token: zz-top-123", "zz-top-123"),
])
def test_tokens_and_passwords_are_removed(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert "[REDACTED]" in out


def test_ordinary_numbers_are_left_alone() -> None:
    text = ("campaign 12 batch 3456 reference 12:345:sms:0.1 at 2025-01-01T10:00:00.123Z "
            "took 1234.5 ms for 100000 rows from 10.0.0.12 epoch 1735689600000")
    assert redact(text) == text


def format_record(formatter: JsonFormatter, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("tenir.test", logging.WARNING, __file__, 1,
                               "sms to %s failed", ("+33612345678",), None)
    for key, value in extra.items():
        setattr(record, key, value)
    line = formatter.format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_formatter_emits_one_redacted_json_object() -> None:
    f = JsonFormatter("paris-node1", "paris")
    out = format_record(f, campaign=7, to="06 12 34 56 78", password="hunter2",
                        nested={"mobile": "+33612345678", "count": 3}, msisdn=33612345678)
    assert out["level"] == "WARNING" and out["logger"] == "tenir.test"
    assert (out["node"], out["site"], out["campaign"]) == ("paris-node1", "paris", 7)
    assert out["message"] == "sms to +*********78 failed"
    assert out["to"] == "********78"
    assert out["password"] == "[REDACTED]"
    assert out["msisdn"] == "*********78"
    assert out["nested"] == {"mobile": "+*********78", "count": 3}
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", str(out["time"]))


def test_campaign_comes_from_the_context_when_not_given() -> None:
    f = JsonFormatter("n", "s")
    assert format_record(f)["campaign"] is None
    with campaign_context(42):
        assert format_record(f)["campaign"] == 42
        assert format_record(f, campaign=5)["campaign"] == 5
    assert format_record(f)["campaign"] is None


def test_exceptions_are_redacted_too() -> None:
    f = JsonFormatter("n", "s")
    try:
        raise ValueError("bad number 0612345678 with token=abcdef")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (),
                                   sys.exc_info())
    out = json.loads(f.format(record))
    assert "0612345678" not in out["exception"] and "abcdef" not in out["exception"]
    assert "ValueError" in out["exception"]


def test_configure_logging_replaces_the_root_handlers() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    try:
        configure_logging("n1", "paris", "DEBUG", stream)
        logging.getLogger("tenir.x").debug("hello %s", "0612345678")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    out = json.loads(stream.getvalue())
    assert out["message"] == "hello ********78" and out["node"] == "n1"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything logged, by any logger, formatted by the JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("paris-node1", "paris"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.mark.asyncio
async def test_requests_carrying_phone_numbers_and_tokens_never_log_them(
    client: Client, captured: io.StringIO,
) -> None:
    stray = "stray-token-9f8e7d6c5b4a"
    r = await client.post("/api/v1/contacts", headers=auth(OPERATOR),
                          json={"name": "A", "mobile": "06 12 34 56 78"})
    assert r.status == 201
    r = await client.post("/api/v1/contacts", headers=auth(OPERATOR),
                          json={"name": "B", "mobile": "06 98 76 54"})
    assert r.status == 422
    r = await client.get("/api/v1/scenarios/+33612345678", headers=auth(OPERATOR))
    assert r.status == 404
    r = await client.get("/api/v1/contacts?password=hunter2", headers=auth(stray))
    assert r.status == 401
    r = await client.get("/api/v1/campaigns/7", headers=auth(OPERATOR))
    assert r.status == 404
    out = captured.getvalue()
    records = [json.loads(line) for line in out.splitlines()]
    access = [x for x in records if x["logger"] == "tenir.api.access"]
    assert len(access) == 5
    assert {x["status"] for x in access} == {201, 422, 404, 401}
    assert access[2]["path"] == "/api/v1/scenarios/+*********78"
    assert access[0]["caller"] == "alice"
    assert access[4]["campaign"] == 7
    for secret in (OPERATOR, stray, "hunter2", "612345678", "12 34 56", "98 76 54",
                   "Authorization"):
        assert secret not in out, secret
