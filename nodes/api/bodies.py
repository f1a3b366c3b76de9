"""Reading request bodies and query strings strictly.

A JSON body must be ``application/json``, UTF-8, one JSON object, without duplicate keys nor
NaN/Infinity (400 otherwise, field ``body``). :class:`Fields` then reads typed members and
refuses unknown ones (422 naming the field, with its path: ``steps[0].templates.fr``).
A body larger than the application's limit is refused with 413 before it is read when its
Content-Length says so, and while it is read otherwise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from aiohttp import web
from aiohttp.typedefs import Middleware

from nodes.api.context import context
from nodes.api.errors import ApiError, invalid
from nodes.api.spec import Handler

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "an array",
               dict: "an object", bool: "a boolean"}


def body_size_middleware(max_body_bytes: int) -> Middleware:
    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_body_bytes:
            raise ApiError(413, f"request body larger than {max_body_bytes} bytes", "body")
        return await handler(request)

    return limit


async def read_body(request: web.Request, *content_types: str) -> bytes:
    """The raw body, after checking its media type; its size is bounded by the app's limit."""
    if request.content_type not in content_types:
        raise ApiError(
            415, f"content type must be {' or '.join(content_types)}, "
            f"not {request.content_type or 'none'}", "Content-Type",
        )
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = context(request).max_body_bytes
        raise ApiError(413, f"request body larger than {limit} bytes", "body") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"body is not UTF-8 (byte {e.start})", "body") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except ValueError as e:
        raise ApiError(400, f"body is not valid JSON: {e}", "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object", "body")
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
        value = value.strip()
        if len(value) > max_len:
            raise invalid(self.path(key), f"longer than {max_len} characters")
        return value or None

    def req_str(self, key: str, max_len: int = 1000) -> str:
        value = self.opt_str(key, max_len)
        if value is None:
            raise invalid(self.path(key), "required")
        return value

    def opt_int(self, key: str, lo: int, hi: int) -> int | None:
        value = self._get(key, required=False)
        if value is None:
            return None
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

    def str_list(self, key: str, max_items: int = 100) -> list[str]:
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
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, "must be an integer") from None
    if not lo <= value <= hi:
        raise invalid(name, f"must be between {lo} and {hi}")
    return value


def check_query(request: web.Request, allowed: Iterable[str]) -> None:
    """Refuse query parameters the route does not know (a typo should not pass unseen)."""
    allowed = set(allowed)
    for name in request.query:
        if name not in allowed:
            raise invalid(name, "unknown query parameter")


def page(items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    return {
        "items": items, "limit": limit, "offset": offset,
        "next_offset": offset + len(items) if len(items) == limit else None,
    }
