"""An in-memory coordination service implementing the Coordinator contract, for unit tests only.

Several ``FakeCoordinator`` share one ``FakeCoordinationServer``; time is a manual clock, so a
test expires a member's lease by advancing it, or freezes the server with ``reachable = False``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from cluster.coordination.base import (
    CoordinationSettings,
    CoordinationUnavailable,
    Coordinator,
    MemberInfo,
    Versioned,
    WatchEvent,
)


@dataclass
class FakeCoordinationServer:
    now: float = 0.0
    reachable: bool = True
    keys: dict[str, tuple[bytes, int, str | None]] = field(default_factory=dict)  # v, ver, owner
    leases: dict[str, float] = field(default_factory=dict)  # member -> expiry
    version: int = 0
    watchers: list[tuple[str, asyncio.Queue[WatchEvent]]] = field(default_factory=list)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for member, expiry in list(self.leases.items()):
            if expiry <= self.now:
                del self.leases[member]
                for key, (_, _, owner) in list(self.keys.items()):
                    if owner == member:
                        self._delete(key)

    def _put(self, key: str, value: bytes, owner: str | None) -> int:
        self.version += 1
        self.keys[key] = (value, self.version, owner)
        for prefix, q in self.watchers:
            if key.startswith(prefix):
                q.put_nowait(WatchEvent("put", key, value))
        return self.version

    def _delete(self, key: str) -> None:
        if self.keys.pop(key, None) is not None:
            for prefix, q in self.watchers:
                if key.startswith(prefix):
                    q.put_nowait(WatchEvent("delete", key))


class FakeCoordinator(Coordinator):
    def __init__(self, server: FakeCoordinationServer, name: str, ttl: float = 6.0) -> None:
        super().__init__(CoordinationSettings(("fake:0",), "/tenir/test/", ttl=ttl,
                                              retry_timeout=1.0))
        self.server = server
        self.name = name
        self.renewed_at: float | None = None

    def _check(self) -> FakeCoordinationServer:
        if not self.server.reachable:
            raise CoordinationUnavailable("fake server unreachable")
        return self.server

    async def connect(self) -> None:
        self._check()

    async def close(self) -> None:
        self.server.leases.pop(self.name, None)
        for key, (_, _, owner) in list(self.server.keys.items()):
            if owner == self.name:
                self.server._delete(key)

    async def join(self, member: MemberInfo) -> None:
        s = self._check()
        s.leases[self.name] = s.now + self.settings.ttl
        s._put(f"members/{member.name}", member.to_bytes(), self.name)
        self.renewed_at = s.now

    async def renew(self) -> None:
        """What a backend's keepalive task does: extend the lease if the server answers."""
        s = self._check()
        if self.name in s.leases:
            s.leases[self.name] = s.now + self.settings.ttl
            self.renewed_at = s.now

    async def confirm(self) -> None:
        s = self._check()
        if self.name not in s.leases:
            raise CoordinationUnavailable("fake: membership lost")
        await self.renew()

    def membership_age(self) -> float:
        return math.inf if self.renewed_at is None else self.server.now - self.renewed_at

    async def members(self) -> list[MemberInfo]:
        s = self._check()
        return [MemberInfo.from_bytes(v) for k, (v, _, _) in sorted(s.keys.items())
                if k.startswith("members/")]

    async def campaign(self, election: str) -> bool:
        s = self._check()
        key = f"elections/{election}"
        if key not in s.keys and self.name in s.leases:
            s._put(key, self.name.encode(), self.name)
        return key in s.keys and s.keys[key][0] == self.name.encode()

    async def leader(self, election: str) -> str | None:
        s = self._check()
        found = s.keys.get(f"elections/{election}")
        return found[0].decode() if found else None

    async def resign(self, election: str) -> None:
        s = self._check()
        key = f"elections/{election}"
        if key in s.keys and s.keys[key][0] == self.name.encode():
            s._delete(key)

    async def get(self, key: str) -> Versioned | None:
        s = self._check()
        found = s.keys.get(key)
        return Versioned(found[0], found[1]) if found else None

    async def compare_and_set(self, key: str, value: bytes, version: int | None) -> bool:
        s = self._check()
        current = s.keys.get(key)
        if (version is None and current is not None) or (
                version is not None and (current is None or current[1] != version)):
            return False
        s._put(key, value, None)
        return True

    async def delete(self, key: str) -> None:
        self._check()._delete(key)

    async def watch(self, prefix: str) -> AsyncIterator[WatchEvent]:  # type: ignore[override]
        s = self._check()
        q: asyncio.Queue[WatchEvent] = asyncio.Queue()
        s.watchers.append((prefix, q))
        yield WatchEvent("resync", state={k: v for k, (v, _, _) in s.keys.items()
                                          if k.startswith(prefix)})
        try:
            while True:
                yield await q.get()
        finally:
            s.watchers.remove((prefix, q))
