"""Who is who, where two callers must be told apart (a drill's runner and its approver): the one
module that knows what the API's principal is. ``Principal.id`` is the identity (the API
user's name, ``nodes/users.py``) and the app's table of callers lists every known principal
(``principals()``): nothing else here depends on how tokens are kept.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from failover.drills.book import Caller, KnownApprover
from nodes.api.context import Principal, principal


class Callers(Protocol):
    """The API's table of callers (``auth.UserTable``)."""

    def principals(self) -> tuple[Principal, ...]: ...


TABLE = web.AppKey("tenir.principals", Callers)
APPROVER_ROLES = ("operator", "oncall")


def caller(request: web.Request) -> Caller:
    """The authenticated caller of ``request``."""
    who = principal(request)
    return Caller(who.id, who.role)


def known_in(table: Callers) -> KnownApprover:
    """``name`` -> the role of the API's caller of that identity, or None if there is none."""

    def role_of(name: str) -> str | None:
        return next((str(p.role) for p in table.principals() if p.id == name), None)

    return role_of


def known(request: web.Request) -> KnownApprover:
    return known_in(request.app[TABLE])
