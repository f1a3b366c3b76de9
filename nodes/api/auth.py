"""Bearer-token authentication and role-based authorisation, per user.

``Authorization: Bearer <token>``; each token belongs to one user (``nodes/users.py``), who has a
role. The presented token is hashed and compared with ``hmac.compare_digest`` against the digest
of *every* user's token, so neither the time taken nor an early exit tells how much of a guess
was right, nor how long tokens are. The configuration holds only digests.

401 (with ``WWW-Authenticate: Bearer``) when the header is missing, malformed or names no known
token; 403 when the token's role may not use the route (see ``spec.ALLOWED``). Routes whose
access is ``public`` skip both. Routes that match nothing fall through to 404/405.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from nodes.api.context import PRINCIPAL, Principal
from nodes.api.errors import ApiError
from nodes.api.ratelimit import note_failure
from nodes.api.spec import ALLOWED, Access, Handler
from nodes.metrics import Metrics
from nodes.users import ApiUser, token_digest

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tenir"'}


class UserTable:
    """Known users, with only their tokens' digests."""

    def __init__(self, users: Sequence[ApiUser]) -> None:
        names = [u.name for u in users]
        if len(set(names)) != len(names):
            raise ValueError("users: two users with the same name")
        digests = [u.token_sha256 for u in users]
        if len(set(digests)) != len(digests):
            raise ValueError("users: two users with the same token")
        self._entries = tuple((bytes.fromhex(u.token_sha256), Principal(u.role, u.name))
                              for u in users)

    def principals(self) -> tuple[Principal, ...]:
        """Every known caller (never a token)."""
        return tuple(who for _, who in self._entries)

    def lookup(self, token: str) -> Principal | None:
        presented = bytes.fromhex(token_digest(token))
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
    table: UserTable, access_of: Mapping[tuple[str, str], Access], metrics: Metrics,
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
            note_failure(request, "missing")
            raise ApiError(401, "missing bearer token", headers=_CHALLENGE)
        who = table.lookup(token)
        if who is None:
            metrics.auth_failures.inc(reason="unknown")
            note_failure(request, "unknown")
            raise ApiError(401, "unknown bearer token", headers=_CHALLENGE)
        if who.role not in ALLOWED[access]:
            metrics.auth_failures.inc(reason="forbidden")
            raise ApiError(403, f"{who.user} (role {who.role}) may not {request.method} "
                           f"{canonical}")
        request[PRINCIPAL] = who
        return await handler(request)

    return authenticate
