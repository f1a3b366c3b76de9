"""Bearer-token authentication and role-based authorisation.

``Authorization: Bearer <token>``; each token maps to a role. The presented token is hashed and
compared with ``hmac.compare_digest`` against the digest of *every* known token, so neither the
time taken nor an early exit tells how much of a guess was right, nor how long tokens are.

401 (with ``WWW-Authenticate: Bearer``) when the header is missing, malformed or names no known
token; 403 when the token's role may not use the route (see ``spec.ALLOWED``). Routes whose
access is ``public`` skip both. Routes that match nothing fall through to 404/405.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware

from nodes.api.context import PRINCIPAL, Principal
from nodes.api.errors import ApiError
from nodes.api.spec import ALLOWED, ROLES, Access, Handler, Role
from nodes.metrics import Metrics

MIN_TOKEN_LENGTH = 16
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tenir"'}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, fit for logs and ``launched_by``."""
    return hashlib.sha256(b"tenir-token:" + token.encode("utf-8", "surrogatepass")).hexdigest()[:12]


class TokenTable:
    """Known tokens, kept only as digests."""

    def __init__(self, tokens: Mapping[str, Role]) -> None:
        entries: list[tuple[bytes, Principal]] = []
        for token, role in tokens.items():
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
            if len(token) < MIN_TOKEN_LENGTH or token != token.strip() or " " in token:
                raise ValueError(
                    f"a token of role {role} is shorter than {MIN_TOKEN_LENGTH} characters "
                    "or contains spaces"
                )
            entries.append((_digest(token), Principal(role, fingerprint(token))))
        self._entries = tuple(entries)

    def principals(self) -> tuple[Principal, ...]:
        """Every known caller (never a token)."""
        return tuple(who for _, who in self._entries)

    def lookup(self, token: str) -> Principal | None:
        presented = _digest(token)
        found: Principal | None = None
        for digest, who in self._entries:
            if hmac.compare_digest(presented, digest):
                found = who
        return found


def bearer_token(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def auth_middleware(
    table: TokenTable, access_of: Mapping[tuple[str, str], Access], metrics: Metrics,
) -> Middleware:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        if match.http_exception is not None:
            return await handler(request)  # 404 / 405: nothing to protect
        route = match.route
        canonical = route.resource.canonical if route.resource is not None else ""
        # A route missing from the table is a programming error: fail closed.
        access: Access = access_of.get((route.method, canonical), "write")
        if access == "public":
            return await handler(request)
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            metrics.auth_failures.inc(reason="missing")
            raise ApiError(401, "missing bearer token", headers=_CHALLENGE)
        who = table.lookup(token)
        if who is None:
            metrics.auth_failures.inc(reason="unknown")
            raise ApiError(401, "unknown bearer token", headers=_CHALLENGE)
        if who.role not in ALLOWED[access]:
            metrics.auth_failures.inc(reason="forbidden")
            raise ApiError(403, f"role {who.role} may not {request.method} {canonical}")
        request[PRINCIPAL] = who
        return await handler(request)

    return authenticate
