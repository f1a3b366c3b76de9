"""The coordination contract: one abstract class, one module per backend beside it
(``etcd.py`` on etcd v3 through ``aetcd``, ``zookeeper.py`` on ZooKeeper through ``kazoo``),
chosen by configuration (``tenir_coordination`` in the inventory).

Contract
--------
Time. Every call finishes within ``retry_timeout`` seconds (the backend retries inside that
budget) or raises :class:`CoordinationUnavailable`. No call blocks forever.

Exceptions. :class:`CoordinationUnavailable` means "the backend could not be reached or did not
answer in time": the operation may or may not have happened (a write may have landed). Any other
:class:`CoordinationError` is a definite refusal. Callers must treat "unavailable" as "I no longer
know", never as "no".

Membership. ``join`` publishes this member under ``members/<name>`` bound to a lease of ``ttl``
seconds (etcd) or to the session (ZooKeeper ephemeral node, session timeout = ttl) and keeps it
alive in the background. ``membership_age()`` is the number of seconds since the last renewal the
server confirmed: a member must stop acting (self-fencing) once that age reaches
``ttl - safety``, before the server can expire it and others take its work. If the key is lost
(expired lease, expired session), the backend re-joins by itself when it can, with a new lease.
``confirm()`` renews now rather than at the next background renewal (a lease keepalive, a
session round trip to a server that has quorum) and returns once the server confirmed it, so
that ``membership_age()`` then counts from this call; it raises :class:`CoordinationUnavailable`
when the server did not confirm within ``retry_timeout``. A node asks for it when it needs
fresh proof that it is still a member of a quorum, not its last renewal (seconds old): during a
PostgreSQL outage, before it sends more of what it cannot record yet.

Election. ``campaign(election)`` tries once to become the leader of ``election`` (a key created
only if absent, bound to this member's lease/session); it returns whether this member now leads.
Leadership ends with the lease/session, or with ``resign``. ``leader(election)`` reads who leads.

Compare-and-set. Values carry a version that changes on every write. ``compare_and_set(key,
value, version)`` writes only if the key's current version is ``version`` (``None``: only if the
key does not exist) and returns whether it wrote; it is atomic on the server.

Watches. ``watch(prefix)`` yields events for keys under ``prefix``. After a broken watch or a
server restart it re-establishes itself and first yields a ``resync`` event carrying the full
current state under the prefix, so a consumer never misses a change silently.

Keys are paths relative to the coordinator's namespace (``/tenir/<cluster>/``); values are bytes.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from cluster.tls import TlsFiles


class CoordinationError(Exception):
    pass


class CoordinationUnavailable(CoordinationError):
    """The backend could not be reached, or did not answer within the retry timeout."""


@dataclass(frozen=True)
class Versioned:
    value: bytes
    version: int


@dataclass(frozen=True)
class MemberInfo:
    name: str
    site: str
    host: str
    carriers: tuple[str, ...] = ()  # channels this member can send on
    capacity: int = 0  # batches it dispatches at once
    url: str = ""  # its API
    # Whether it reaches the campaign store (nodes/store_health.py): "ok", "unreachable" (for a
    # while: it keeps sending, outcomes buffered) or "cut" (others reach it, this node does not:
    # it stopped sending, the watchdog moves its batches); store_seq grows while it is "ok".
    store: str = "ok"
    store_seq: int = 0

    def to_bytes(self) -> bytes:
        import json

        return json.dumps({"name": self.name, "site": self.site, "host": self.host,
                           "carriers": list(self.carriers), "capacity": self.capacity,
                           "url": self.url, "store": self.store,
                           "store_seq": self.store_seq}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> MemberInfo:
        import json

        d = json.loads(raw)
        return cls(name=str(d["name"]), site=str(d["site"]), host=str(d["host"]),
                   carriers=tuple(d.get("carriers", ())), capacity=int(d.get("capacity", 0)),
                   url=str(d.get("url", "")), store=str(d.get("store", "ok")),
                   store_seq=int(d.get("store_seq", 0)))


@dataclass(frozen=True)
class WatchEvent:
    kind: Literal["put", "delete", "resync"]
    key: str = ""
    value: bytes | None = None
    state: Mapping[str, bytes] = field(default_factory=dict)  # for "resync": everything


@dataclass(frozen=True)
class CoordinationSettings:
    endpoints: tuple[str, ...]  # "host:port"
    namespace: str  # e.g. "/tenir/tenir-lab/"
    ttl: float = 6.0  # membership lease / session timeout, seconds
    retry_timeout: float = 2.0  # every call finishes within this
    # TLS to the servers: the CA that signed them and our certificate (etcd: its common name
    # is our etcd user; ZooKeeper: required by its TLS port). None: plain TCP (tests only).
    tls: TlsFiles | None = None
    # ZooKeeper: "user:password" of the digest scheme; our znodes get an ACL for it alone.
    zk_digest: str | None = None

    def __repr__(self) -> str:  # no password in a traceback
        return (f"CoordinationSettings(endpoints={self.endpoints!r}, namespace="
                f"{self.namespace!r}, tls={self.tls is not None})")

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("endpoints: at least one host:port")
        if self.retry_timeout * 2 >= self.ttl:
            raise ValueError(f"ttl {self.ttl} must exceed 2 * retry_timeout {self.retry_timeout}"
                             " so a member can renew before its lease runs out")


class Coordinator(abc.ABC):
    """See the module docstring for the contract every backend honours."""

    def __init__(self, settings: CoordinationSettings) -> None:
        self.settings = settings

    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Leave (revoke the lease / close the session), stop background tasks. Idempotent."""

    # membership
    @abc.abstractmethod
    async def join(self, member: MemberInfo) -> None: ...

    @abc.abstractmethod
    def membership_age(self) -> float:
        """Seconds since the server last confirmed this member's lease/session (inf if never)."""

    @abc.abstractmethod
    async def confirm(self) -> None:
        """Renew the membership now; returns once the server confirmed it (see the module
        docstring), raises CoordinationUnavailable within ``retry_timeout`` otherwise."""

    @abc.abstractmethod
    async def members(self) -> list[MemberInfo]: ...

    # election
    @abc.abstractmethod
    async def campaign(self, election: str) -> bool: ...

    @abc.abstractmethod
    async def leader(self, election: str) -> str | None: ...

    @abc.abstractmethod
    async def resign(self, election: str) -> None: ...

    # keys
    @abc.abstractmethod
    async def get(self, key: str) -> Versioned | None: ...

    @abc.abstractmethod
    async def compare_and_set(self, key: str, value: bytes, version: int | None) -> bool: ...

    @abc.abstractmethod
    async def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def watch(self, prefix: str) -> AsyncIterator[WatchEvent]: ...

    def may_act(self, safety: float) -> bool:
        """Self-fencing: whether this member may still act (its membership is fresh enough)."""
        return self.membership_age() < self.settings.ttl - safety
