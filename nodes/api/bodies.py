"""Reading request bodies and query strings strictly.

A JSON body must be ``application/json``, UTF-8, one JSON object, without duplicate keys nor
NaN/Infinity, nested at most ``MAX_JSON_DEPTH`` deep, without a lone surrogate (``"\ud800"``)
in any string or key, and with every number a finite float or a 64-bit integer (400 naming the
body or the member at fault). :class:`Fields` then reads typed members and refuses unknown ones
(422 naming the field, with its path: ``steps[0].templates.fr``).

Each route has a body limit and a time to receive it (``HttpLimits``: a few KiB and seconds on
public routes, more on authenticated ones, most on the CSV import), set on the request by
:func:`body_limit_middleware`: a body larger than its limit is refused with 413 before it is read
when its Content-Length says so, and as soon as it passes the limit otherwise; one not received
in time gets 408. Both close the connection.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from aiohttp import web
from aiohttp.typedefs import Middleware

from nodes.api.errors import ApiError, invalid
from nodes.api.spec import Handler

MAX_JSON_DEPTH = 32
MAX_JSON_INT = 2**63 - 1

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "an array",
               dict: "an object", bool: "a boolean"}


@dataclass(frozen=True)
class BodyLimit:
    max_bytes: int
    timeout_s: float


BODY_LIMIT = web.RequestKey("tenir.body_limit", BodyLimit)


def _too_large(limit: BodyLimit) -> ApiError:
    return ApiError(413, f"request body larger than {limit.max_bytes} bytes", "body", close=True)


def body_limit_middleware(
    limit_of: Mapping[tuple[str, str], BodyLimit], default: BodyLimit,
) -> Middleware:
    """Sets each request's :class:`BodyLimit` (its route's, else ``default``) and refuses at
    once a Content-Length above it."""

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        found = default
        if match.http_exception is None:
            route = match.route
            canonical = route.resource.canonical if route.resource is not None else ""
            found = limit_of.get((route.method, canonical), default)
        request[BODY_LIMIT] = found
        length = request.content_length
        if length is not None and length > found.max_bytes:
            raise _too_large(found)
        return await handler(request)

    return limit


async def read_body(request: web.Request, *content_types: str) -> bytes:
    """The raw body, after checking its media type, bounded in size and time by the route's
    :class:`BodyLimit`."""
    if request.content_type not in content_types:
        raise ApiError(
            415, f"content type must be {' or '.join(content_types)}, "
            f"not {request.content_type or 'none'}", "Content-Type",
        )
    limit = request[BODY_LIMIT]
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limit.timeout_s):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit.max_bytes:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, f"request body not received within {limit.timeout_s:g} s",
                       "body", close=True) from None
    return b"".join(chunks)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed")


def _path(nodes: list[tuple[int, str]], index: int) -> str:
    """The member path of node ``index`` (``steps[0].templates.fr``), built only for an error."""
    parts: list[str] = []
    while index > 0:
        parent, label = nodes[index]
        parts.append(label)
        index = parent
    path = ""
    for label in reversed(parts):
        path = path + label if label.startswith("[") or not path else f"{path}.{label}"
    return path or "body"


def check_json_tree(data: Any) -> None:
    """Refuse (400, naming the member) what Python's parser accepts but nothing after it
    should meet: deep nesting, lone surrogates, infinite floats, integers beyond 64 bits.
    Iterative, so that depth costs no recursion; paths are built only for the error."""
    nodes: list[tuple[int, str]] = [(0, "")]  # (parent index, label)
    stack: list[tuple[Any, int, int]] = [(data, 0, 0)]  # (value, node index, depth)

    def refuse(index: int, problem: str) -> NoReturn:
        raise ApiError(400, problem, _path(nodes, index))

    while stack:
        value, index, depth = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    refuse(index, "contains a lone surrogate (\\ud800-\\udfff is not valid "
                           "Unicode on its own)")
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not -MAX_JSON_INT <= value <= MAX_JSON_INT:
                refuse(index, "number out of range (at most 2**63 - 1 in magnitude)")
        elif isinstance(value, float):
            if not math.isfinite(value):
                refuse(index, "number out of range (too large for a float)")
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                refuse(index, f"nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    if not key.isascii():  # checked first: a bad key must not name a path
                        try:
                            key.encode("utf-8")
                        except UnicodeEncodeError:
                            refuse(index, "a key contains a lone surrogate (not valid Unicode)")
                    nodes.append((index, key if len(key) <= 40 else f"{key[:40]}..."))
                    stack.append((item, len(nodes) - 1, depth + 1))
            else:
                for i, item in enumerate(value):
                    nodes.append((index, f"[{i}]"))
                    stack.append((item, len(nodes) - 1, depth + 1))


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"body is not UTF-8 (byte {e.start})", "body") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, f"body is nested deeper than {MAX_JSON_DEPTH} levels",
                       "body") from None
    except ValueError as e:
        raise ApiError(400, f"body is not valid JSON: {str(e)[:200]}", "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object", "body")
    check_json_tree(data)
    return data


async def read_json_object(request: web.Request) -> dict[str, Any]:
    return parse_json_object(await read_body(request, "application/json"))


class Fields:
    """Typed access to the members of one JSON object; unknown members are refused at once."""

    def __init__(self, data: Mapping[str, Any], allowed: Iterable[str], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix
        allowed = set(allowed)
        for key in data:
            if key not in allowed:
                raise invalid(self.path(key), "unknown field")

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise invalid(self.path(key), "required")
        return value

    def _type_error(self, key: str, expected: type) -> NoReturn:
        got = self.data.get(key)
        kind = _TYPE_NAMES.get(type(got), type(got).__name__)
        raise invalid(self.path(key), f"must be {_TYPE_NAMES[expected]}, not {kind}")

    def opt_str(self, key: str, max_len: int = 1000) -> str | None:
        value = self._get(key, required=False)
        if value is None:
            return None
        if not isinstance(value, str):
            self._type_error(key, str)
        if len(value) > max_len:  # as sent, as the schema's maxLength counts
            raise invalid(self.path(key), f"longer than {max_len} characters")
        return value.strip() or None

    def req_str(self, key: str, max_len: int = 1000) -> str:
        value = self.opt_str(key, max_len)
        if value is None:
            raise invalid(self.path(key), "required")
        return value

    def choice(self, key: str, choices: Sequence[str]) -> str:
        """A required member that is one of ``choices`` exactly as sent (JSON Schema's enum)."""
        value = self._get(key, required=True)
        if not isinstance(value, str):
            self._type_error(key, str)
        if value not in choices:
            raise invalid(self.path(key), f"must be one of {', '.join(choices)}")
        return value

    def opt_int(self, key: str, lo: int, hi: int) -> int | None:
        value = self._get(key, required=False)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 36.0 is an integer, as JSON Schema counts
        if isinstance(value, bool) or not isinstance(value, int):
            self._type_error(key, int)
        if not lo <= value <= hi:
            raise invalid(self.path(key), f"must be between {lo} and {hi}")
        return value

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.opt_int(key, lo, hi)
        return default if value is None else value

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self._get(key, required=False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._type_error(key, float)
        if not math.isfinite(value) or not lo <= value <= hi:
            raise invalid(self.path(key), f"must be between {lo:g} and {hi:g}")
        return float(value)

    def str_list(self, key: str, max_items: int = 100, max_len: int = 1000) -> list[str]:
        value = self._get(key, required=False)
        if value is None:
            return []
        if not isinstance(value, list):
            self._type_error(key, list)
        if len(value) > max_items:
            raise invalid(self.path(key), f"more than {max_items} items")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise invalid(f"{self.path(key)}[{i}]", "must be a string")
            if len(item) > max_len:
                raise invalid(f"{self.path(key)}[{i}]", f"longer than {max_len} characters")
        return list(value)

    def obj(self, key: str) -> dict[str, Any]:
        value = self._get(key, required=True)
        if not isinstance(value, dict):
            self._type_error(key, dict)
        return value

    def array(self, key: str, min_items: int, max_items: int) -> list[Any]:
        value = self._get(key, required=True)
        if not isinstance(value, list):
            self._type_error(key, list)
        if not min_items <= len(value) <= max_items:
            raise invalid(self.path(key), f"must have {min_items} to {max_items} items")
        return value


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, "must be an integer") from None
    if not lo <= value <= hi:
        raise invalid(name, f"must be between {lo} and {hi}")
    return value


def required_query_int(request: web.Request, name: str, lo: int, hi: int) -> int:
    """An integer query parameter the route cannot do without (422 when absent or empty)."""
    if not request.query.get(name):
        raise invalid(name, "required")
    return query_int(request, name, lo, lo, hi)


def check_query(request: web.Request, allowed: Iterable[str]) -> None:
    """Refuse query parameters the route does not know (a typo should not pass unseen)."""
    allowed = set(allowed)
    for name in request.query:
        if name not in allowed:
            raise invalid(name, "unknown query parameter")
        if len(request.query.getall(name)) > 1:
            raise invalid(name, "given more than once")


def page(items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    return {
        "items": items, "limit": limit, "offset": offset,
        "next_offset": offset + len(items) if len(items) == limit else None,
    }
