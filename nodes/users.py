"""The API's users: a name, a role and the SHA-256 digest of their bearer token.

Roles: ``operator`` (everything), ``oncall`` (read; pause, resume, cancel; record operator
events), ``auditor`` (read only). The node configuration lists users (``users`` in node.yml);
the token itself need not be there, its digest is enough. Every action is recorded under the
user's name (a campaign's ``launched_by``, an event's ``details.by``, the access log's
``caller``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final, Literal

Role = Literal["operator", "oncall", "auditor"]
ROLES: tuple[Role, ...] = ("operator", "oncall", "auditor")
MIN_TOKEN_LENGTH: Final = 16
USER_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
_DIGEST: Final = re.compile(r"[0-9a-f]{64}\Z")


def token_digest(token: str) -> str:
    """The SHA-256 of a token, in lower-case hex: what the configuration may hold instead."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ApiUser:
    name: str
    role: Role
    token_sha256: str

    def __post_init__(self) -> None:
        if not USER_NAME.match(self.name):
            raise ValueError("name: 1 to 64 letters, digits, '.', '_', '@' or '-', starting "
                             "with a letter or digit")
        if self.role not in ROLES:
            raise ValueError(f"role: one of {', '.join(ROLES)}")
        if not _DIGEST.match(self.token_sha256):
            raise ValueError("token_sha256: 64 lower-case hex digits")

    @classmethod
    def with_token(cls, name: str, role: Role, token: str) -> ApiUser:
        if len(token) < MIN_TOKEN_LENGTH or token != token.strip() or " " in token:
            raise ValueError(f"token: at least {MIN_TOKEN_LENGTH} characters, no spaces")
        return cls(name, role, token_digest(token))

    def __repr__(self) -> str:
        return f"ApiUser(name={self.name!r}, role={self.role!r})"
