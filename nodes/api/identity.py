"""Who is who, where two callers must be told apart (a drill's runner and its approver): the one
module that knows what the API's principal is. Today a principal is a role and the fingerprint
of its token (identity ``role:fingerprint``); with per-user tokens it is a user's name, and only
this module follows (``Principal.id`` stays the identity, the table lists the users).
"""

from __future__ import annotations

from aiohttp import web

from failover.drills.book import Caller, KnownApprover
from nodes.api.auth import TokenTable
from nodes.api.context import principal

TABLE = web.AppKey("tenir.principals", TokenTable)
APPROVER_ROLES = ("operator", "oncall")


def caller(request: web.Request) -> Caller:
    """The authenticated caller of ``request``."""
    who = principal(request)
    return Caller(who.id, who.role)


def known(request: web.Request) -> KnownApprover:
    """``name`` -> the role of the API's user of that identity, or None if there is none."""
    table = request.app[TABLE]

    def role_of(name: str) -> str | None:
        return next((str(p.role) for p in table.principals() if p.id == name), None)

    return role_of
