"""The OpenAPI 3.1 document, generated from the same :class:`RouteSpec` table that the
application registers and the authorisation middleware enforces.

Each operation states its security (``bearer`` or none), the roles allowed (``x-roles``), its
parameters, request body and responses. Error responses follow from what the route does:
401/403 from its access, 400/408/413/415/422 from having a body, 404 from a path parameter,
422 from query parameters, 429 from the rate limits (every route but /healthz), 503 from using
the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nodes.api.spec import ALLOWED, JSON, ROLES, Resp, RouteSpec, ref

ERROR_SCHEMA: JSON = {
    "type": "object", "required": ["error"], "additionalProperties": True,
    "properties": {
        "error": {"type": "string", "description": "what is wrong"},
        "field": {"type": "string", "description": "the field, parameter or 'line N' at fault"},
    },
}

_STANDARD_ERRORS: dict[int, str] = {
    400: "malformed body (not UTF-8, not JSON, not an object, duplicate keys, nested too deep, "
         "a lone surrogate, a number out of range)",
    401: "missing or unknown bearer token; on a callback, the carrier's signature",
    403: "the token's role may not use this route; on a callback, the URL's signature",
    404: "not found",
    408: "request body not received in time",
    409: "the current state does not allow this (a campaign's state, a replayed or early "
         "acknowledgement)",
    413: "request body too large",
    415: "wrong Content-Type",
    422: "invalid field or parameter (named in 'field')",
    429: "too many requests, or too many failed attempts, from this address (Retry-After)",
    503: "campaign store unavailable, retry",
}

_METHODS_WITHOUT_STORE = {"healthz", "metrics", "openapi", "readyz", "acknowledgementPage"}
_NOT_RATE_LIMITED = {"healthz"}


def _error(status: int) -> JSON:
    return {"description": _STANDARD_ERRORS[status],
            "content": {"application/json": {"schema": ref("Error")}}}


def _response(resp: Resp) -> JSON:
    out: JSON = {"description": resp.description}
    content = {resp.content_type: resp.schema} if resp.schema is not None else {}
    content.update(resp.others)
    if content:
        out["content"] = {kind: {"schema": schema} for kind, schema in content.items()}
    return out


def operation(spec: RouteSpec) -> JSON:
    op: JSON = {
        "operationId": spec.operation_id,
        "summary": spec.summary,
        "tags": [spec.tag],
    }
    if spec.access == "public":
        op["security"] = []
        op["x-roles"] = []
        op["description"] = "No token."
    else:
        roles = [r for r in ROLES if r in ALLOWED[spec.access]]
        op["security"] = [{"bearer": []}]
        op["x-roles"] = roles
        op["description"] = f"Roles: {', '.join(roles)}."
    if spec.params:
        op["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
             "description": p.description, "schema": p.schema}
            for p in spec.params
        ]
    if spec.checked:
        op["x-checked-beyond-schema"] = list(spec.checked)
    if spec.body is not None:
        op["requestBody"] = {
            "required": True, "description": spec.body.description,
            "content": {spec.body.content_type: {"schema": spec.body.schema}},
        }
    responses: dict[str, JSON] = {str(s): _response(r) for s, r in sorted(spec.responses.items())}
    errors: set[int] = set(spec.errors)
    if spec.access != "public":
        errors.add(401)
        if ALLOWED[spec.access] != frozenset(ROLES):
            errors.add(403)
    if spec.body is not None:
        errors |= {400, 408, 413, 415, 422}
    if spec.operation_id not in _NOT_RATE_LIMITED:
        errors.add(429)
    if any(p.where == "path" for p in spec.params):
        errors.add(404)
    if any(p.where == "query" for p in spec.params):
        errors.add(422)
    if spec.operation_id not in _METHODS_WITHOUT_STORE:
        errors.add(503)
    for status in sorted(errors):
        responses.setdefault(str(status), _error(status))
    op["responses"] = dict(sorted(responses.items()))
    return op


def build(
    routes: Iterable[tuple[str, RouteSpec]], schemas: Mapping[str, JSON], *, node: str,
) -> dict[str, Any]:
    """The document for ``routes``, given as (OpenAPI path, spec) pairs."""
    paths: dict[str, dict[str, JSON]] = {}
    for path, spec in routes:
        paths.setdefault(path, {})[spec.method.lower()] = operation(spec)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tenir alert node API",
            "version": "1",
            "description": "Contacts, groups, scenarios and campaigns of the tenir "
                           f"mass-alerting platform, as served by node {node}. Errors are "
                           "JSON objects {error, field}.",
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, **dict(sorted(schemas.items()))},
            "securitySchemes": {
                "bearer": {
                    "type": "http", "scheme": "bearer",
                    "description": "A token mapped to a role: operator (everything), oncall "
                                   "(read, pause/resume/cancel), auditor (read only).",
                },
            },
        },
    }
