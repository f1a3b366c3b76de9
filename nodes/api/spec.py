"""What a route is: its handler, who may call it, and what the OpenAPI document says about it.

Every route of the API is declared once as a :class:`RouteSpec` (each resource module exports
its ``ROUTES`` and ``SCHEMAS``). The application registers exactly these routes, the
authorisation middleware reads their ``access``, and ``openapi.py`` describes them: the three
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from nodes.users import ROLES, Role

__all__ = ["ALLOWED", "API", "JSON", "ROLES", "SPACE", "Access", "Body", "Handler", "Param",
           "Resp", "Role", "RouteSpec", "filled", "list_of", "page_of", "ref"]

# public: no token (probes, carrier callbacks); read: any role; control: pause/resume/cancel;
# write: create, import, launch.
Access = Literal["public", "read", "control", "write"]
ALLOWED: Mapping[Access, frozenset[Role]] = {
    "public": frozenset(ROLES),
    "read": frozenset({"operator", "oncall", "auditor"}),
    "control": frozenset({"operator", "oncall"}),
    "write": frozenset({"operator"}),
}

JSON = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API = "/api/v1"


def ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def page_of(item: str) -> JSON:
    """The schema of a paginated list of ``item``."""
    return {
        "type": "object",
        "required": ["items", "limit", "offset", "next_offset"],
        "properties": {
            "items": {"type": "array", "items": ref(item)},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "next_offset": {
                "type": ["integer", "null"],
                "description": "offset of the next page, null on the last page",
            },
        },
    }


def list_of(item: str) -> JSON:
    return {
        "type": "object", "required": ["items"],
        "properties": {"items": {"type": "array", "items": ref(item)}},
    }


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query"]
    schema: JSON
    description: str
    required: bool = False


@dataclass(frozen=True)
class Body:
    content_type: str
    schema: JSON
    description: str = ""


@dataclass(frozen=True)
class Resp:
    description: str
    schema: JSON | None = None
    content_type: str = "application/json"
    # Further media types of the same response, with their schemas (a report as HTML or PDF).
    others: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str  # aiohttp path; a regex in a placeholder is dropped from the OpenAPI path
    handler: Handler
    access: Access
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, Resp]
    body: Body | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = field(default=())  # error statuses beyond the automatic ones
    large_body: bool = False  # takes bodies up to HttpLimits.import_body_bytes (CSV import)
    # Fields (or 'line N' prefixes) checked beyond what JSON Schema can say (phone numbers
    # against numbering plans, names that must exist): a schema-valid request may get a 422
    # naming one of them. Published as x-checked-beyond-schema; '[]' stands for any index.
    checked: tuple[str, ...] = ()


# A string with something besides white space and no control character (what the handlers
# accept once they have stripped it), at most ``max_len`` long as sent.
_VISIBLE = r"[^\s\x00-\x1f\x7f]"
_PRINTABLE = r"[^\x00-\x1f\x7f]"


def text(max_len: int, exclude: str = "", **extra: Any) -> JSON:
    visible, printable = _VISIBLE, _PRINTABLE
    if exclude:
        visible, printable = visible[:-1] + exclude + "]", printable[:-1] + exclude + "]"
    return {"type": "string", "maxLength": max_len,
            "pattern": f"^{printable}*{visible}{printable}*$", **extra}


# White space as Python's str.isspace() has it (what str.strip() removes), spelt out: ECMA's \s
# and Python's differ (U+001C..U+001F, U+0085, U+FEFF).
SPACE = ("\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f"
         "\\u3000")


def filled(max_len: int, **extra: Any) -> JSON:
    """A string with something besides white space, at most ``max_len`` long as sent: what
    ``Fields.req_str`` accepts (it strips; control characters pass)."""
    return {"type": "string", "maxLength": max_len, "pattern": f"[^{SPACE}]", **extra}


def nullable(schema: JSON) -> JSON:
    """``schema`` or null: an optional member may be sent as null (the same as absent)."""
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], None]}
    kind = schema["type"]
    return {**schema, "type": [*kind, "null"] if isinstance(kind, list) else [kind, "null"]}


LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000,
                                 "default": 100}, "page size")
MAX_OFFSET = 10**9
OFFSET = Param("offset", "query", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET,
                                   "default": 0}, "number of items to skip")
