"""No input gives a 5xx: deep nesting, lone surrogates (``"\\ud800"``), ``10**400``, ``1e400``,
huge keys and wrong types, in bodies (every JSON route, the voice callback with a valid carrier
signature so that its body is parsed), query strings and paths; then arbitrary JSON from
Hypothesis. Each refusal is a 4xx whose JSON names the problem."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.api.app import ROUTES
from nodes.carriers.callback_auth import HEADER, sign_callback
from tests.api.conftest import CARRIER_SECRET, OPERATOR, Client, auth, seed

pytestmark = pytest.mark.unit

# Every placeholder of the path given a value ({id}, {run_id}, {finding}): the route itself,
# not a shorter path that may be another route or none.
JSON_ROUTES = sorted({(r.method, re.sub(r"\{[^}]+\}", "1", r.path)) for r in ROUTES
                      if r.body is not None and r.body.content_type == "application/json"})

HOSTILE: list[tuple[str, bytes]] = [
    ("deep arrays", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("deep objects", b'{"a": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}"),
    ("nested past the limit", b'{"name": ' + b"[" * 40 + b"]" * 40 + b"}"),
    ("lone surrogate", b'{"name": "\\ud800", "kind": "\\udfff", "reference": "\\ud800"}'),
    ("lone surrogate key", b'{"\\ud800": 1}'),
    ("10**400", b'{"name": "x", "priority": 1' + b"0" * 400 + b', "population": 1'
     + b"0" * 400 + b', "batch_size": 1' + b"0" * 400 + b"}"),
    ("1e400", b'{"name": "x", "priority": 1e400, "retries": -1e400, "population": 1e400}'),
    ("5000-digit integer", b'{"population": 1' + b"0" * 5000 + b"}"),
    ("huge key", json.dumps({"k" * 16_384: 1}).encode()),
    ("huge value", json.dumps({"name": "n" * 200_000}).encode()),
    ("wrong types", json.dumps({"name": {"a": [1]}, "steps": "x", "scenario": [],
                                "group": 3, "kind": None, "sentence": 1.5, "details": [],
                                "status": {"x": 1}, "reference": 12}).encode()),
    ("not an object", b"[1, 2, 3]"),
    ("NaN", b'{"name": NaN}'),
    ("duplicate keys", b'{"name": "a", "name": "b"}'),
    ("not UTF-8", b'{"name": "\xff\xfe"}'),
    ("empty", b""),
]


def _signed(path: str, body: bytes) -> dict[str, str]:
    headers = {"Content-Type": "application/json", **auth(OPERATOR)}
    if path.endswith("/callbacks/voice"):
        headers[HEADER] = sign_callback(CARRIER_SECRET, body)
    return headers


async def _expect_4xx(client: Client, method: str, path: str, body: bytes,
                      what: str) -> None:
    r = await client.request(method, path, data=body, headers=_signed(path, body))
    text = await r.text()
    assert 400 <= r.status < 500, f"{what}: {method} {path} -> {r.status} {text[:300]}"
    if r.content_type == "application/json":
        answer = json.loads(text)
        assert answer.get("error"), (what, answer)


@pytest.mark.asyncio
@pytest.mark.parametrize(("what", "body"), HOSTILE, ids=[w for w, _ in HOSTILE])
async def test_hostile_bodies_get_a_4xx_on_every_json_route(
    client: Client, what: str, body: bytes,
) -> None:
    await seed(client)
    for method, path in JSON_ROUTES:
        await _expect_4xx(client, method, path, body, what)


@pytest.mark.asyncio
async def test_the_problem_is_named(client: Client) -> None:
    cases = [
        (b'{"name": "\\ud800", "steps": []}', "name", "lone surrogate"),
        (b'{"name": "x", "priority": 1' + b"0" * 400 + b"}", "priority", "out of range"),
        (b'{"name": "x", "priority": 1e400}', "priority", "out of range"),
        (b'{"a": ' + b"[" * 50 + b"]" * 50 + b"}", "a[0][0]", "nested deeper"),
        (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "body", "nested deeper"),
    ]
    for body, field, problem in cases:
        r = await client.post("/api/v1/scenarios", data=body,
                              headers={"Content-Type": "application/json", **auth(OPERATOR)})
        answer = await r.json()
        assert r.status == 400, answer
        assert answer["field"].startswith(field) and problem in answer["error"], answer
    r = await client.post("/api/v1/events", json={"k" * 16_384: 1, "kind": "operator.x",
                                                  "sentence": "s"}, headers=auth(OPERATOR))
    answer = await r.json()
    assert r.status == 422 and answer["error"] == "unknown field"
    assert answer["field"] == "k" * 100 + "...(16384 characters)"


@pytest.mark.asyncio
@pytest.mark.parametrize("query", [
    "limit=1" + "0" * 400, "limit=%ED%A0%80", "offset=-1", "limit=1e400", "offset=" + "9" * 5000,
    "limit=NaN", "x=" + "y" * 8000, "%ED%A0%80=1", "limit=1&limit=2",
])
async def test_hostile_query_strings_get_a_4xx(client: Client, query: str) -> None:
    for path in ("/api/v1/contacts", "/api/v1/campaigns", "/api/v1/events",
                 "/api/v1/campaigns/1/recipients"):
        r = await client.get(f"{path}?{query}", headers=auth(OPERATOR))
        assert 400 <= r.status < 500, (path, query, r.status, await r.text())


@pytest.mark.asyncio
@pytest.mark.parametrize("segment", [
    "%ED%A0%80", "%00", "9" * 30, "1" + "0" * 400, "a-" * 3000, "+33612345678",
    "%F0%9F%92%A9" * 100, "..%2F..%2Fetc",
])
async def test_hostile_paths_get_a_4xx(client: Client, segment: str) -> None:
    for path in ("/api/v1/scenarios/{}", "/api/v1/campaigns/{}", "/api/v1/ack/{}",
                 "/api/v1/contacts/{}"):
        for method in ("GET", "POST", "DELETE"):
            r = await client.request(method, path.format(segment), headers=auth(OPERATOR))
            assert r.status < 500, (method, path.format(segment)[:80], r.status)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False) | st.text(alphabet=st.characters(codec=None)),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(alphabet=st.characters(codec=None), max_size=20), children,
                      max_size=5),
    max_leaves=30,
)
KNOWN = ["name", "steps", "channel", "templates", "fr", "scenario", "group", "population",
         "kind", "sentence", "details", "reference", "status", "dtmf", "phone", "mobile",
         "email", "groups", "priority", "retries", "ack", "batch_size"]


def _encode(value: Any) -> bytes:
    # ensure_ascii escapes lone surrogates as \ud800: valid JSON text, as an attacker sends it
    return json.dumps(value, ensure_ascii=True).encode()


@pytest.mark.asyncio
@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(body=st.dictionaries(st.sampled_from(KNOWN) | st.text(max_size=10), JSON_VALUES,
                            max_size=8))
async def test_arbitrary_json_never_gives_a_5xx(client: Client, body: dict[str, Any]) -> None:
    raw = _encode(body)
    for method, path in JSON_ROUTES:
        r = await client.request(method, path, data=raw, headers=_signed(path, raw))
        assert r.status < 500, (method, path, raw[:300], r.status, (await r.text())[:300])
