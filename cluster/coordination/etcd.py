"""etcd v3 backend of the coordination contract (see base.py), on ``aetcd`` (asyncio, gRPC).

Layout under the namespace ``N`` (``settings.namespace``, e.g. ``/tenir/tenir-lab/``):

* ``N members/<name>``: the member's :class:`MemberInfo`, attached to its lease;
* ``N elections/<election>``: the leader's name, created only if absent, attached to the
  leader's member lease (leadership ends with the lease, or with ``resign``);
* any other key: plain values; ``Versioned.version`` is the key's ``mod_revision``, which
  changes on every write, also across a delete and re-create (no ABA).

Membership: one lease of ``ceil(ttl)`` seconds (etcd may grant more, never less), renewed by an
owned background task every ``ttl / 3`` (sooner after a failure). ``membership_age()`` counts from
the moment the last acknowledged keepalive (or grant) was *sent*, so the server's expiry is
always at least ``ttl`` after it. When the server answers that the lease is gone (TTL 0 or
"lease not found"), the task grants a new lease and puts the member key again. A member key
held by another lease (a previous incarnation not yet expired, or a duplicate name) is never
taken over: ``join`` raises CoordinationError and the task retries until that key is gone.

Time: every call runs under one deadline of ``retry_timeout`` (``asyncio.timeout``); inside it
the endpoints are tried in order, each attempt bounded by ``retry_timeout / len(endpoints)``.
Timeouts, gRPC UNAVAILABLE/DEADLINE_EXCEEDED/CANCELLED/... and connection errors become
:class:`CoordinationUnavailable`; refusals (invalid argument, permission, not found, ...)
become :class:`CoordinationError`. A compare-and-set whose first attempt failed in flight and
whose retry then fails the compare raises ``CoordinationUnavailable``: the first attempt may
have landed.

Watches: the first event is always a ``resync`` with the state under the prefix (this also tells
the consumer that the watch is in place); after a broken stream (server restart, endpoint lost,
compaction) the watch lists the prefix again and resumes from that revision + 1, yielding a new
``resync`` first. A watch never raises ``CoordinationUnavailable``: it keeps re-establishing
itself until the consumer stops iterating or the coordinator is closed (then it ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aetcd  # type: ignore[import-untyped]
import aetcd.watcher  # type: ignore[import-untyped]
from aetcd import rpc

from .base import (
    CoordinationError,
    CoordinationSettings,
    CoordinationUnavailable,
    Coordinator,
    MemberInfo,
    Versioned,
    WatchEvent,
)
from .etcd_client import endpoint_client

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# gRPC status codes that are a definite answer from the server (the request was refused);
# every other failure means "no answer": CoordinationUnavailable.
_DEFINITE_CODES = frozenset({
    rpc.StatusCode.INVALID_ARGUMENT, rpc.StatusCode.FAILED_PRECONDITION,
    rpc.StatusCode.NOT_FOUND, rpc.StatusCode.ALREADY_EXISTS, rpc.StatusCode.PERMISSION_DENIED,
    rpc.StatusCode.UNAUTHENTICATED, rpc.StatusCode.OUT_OF_RANGE, rpc.StatusCode.UNIMPLEMENTED,
})



SWITCH_SAY_EVERY_S = 30.0  # at most one "switching to endpoint" line per this many seconds


class _LeaseGone(CoordinationError):
    """The server no longer knows our lease (expired or revoked)."""


class _LeaseIs:
    """Transaction compare on a key's lease (aetcd only has value/version/create/mod)."""

    def __init__(self, key: bytes, lease: int) -> None:
        self.key, self.lease = key, lease

    def build_message(self) -> Any:
        cmp = rpc.Compare()
        cmp.key, cmp.result, cmp.target, cmp.lease = (
            self.key, rpc.Compare.EQUAL, rpc.Compare.LEASE, self.lease)
        return cmp


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``http://host:port`` -> (host, port)."""
    hostport = endpoint.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"endpoint {endpoint!r}: expected host:port")
    return host.strip("[]"), int(port)


async def _watch_prefix(client: Any, prefix: bytes, start_revision: int) -> Any:
    return await client.watch_prefix(prefix, start_revision=start_revision)


def _definite(exc: BaseException) -> bool:
    cause = exc.__cause__
    if isinstance(exc, aetcd.InvalidArgumentError | aetcd.exceptions.UnauthenticatedError
                  | aetcd.PreconditionFailedError | aetcd.DuplicateLeaseError):
        return True
    return isinstance(cause, rpc.AioRpcError) and cause.code() in _DEFINITE_CODES


def _lease_not_found(exc: BaseException) -> bool:
    return "lease not found" in str(exc)


class EtcdCoordinator(Coordinator):
    def __init__(self, settings: CoordinationSettings) -> None:
        super().__init__(settings)
        self._endpoints = [parse_endpoint(e) for e in settings.endpoints]
        self._clients: list[Any] = [None] * len(self._endpoints)
        self._current = 0
        self._switches, self._switch_said = 0, float("-inf")  # switches unsaid; last said at
        ns = settings.namespace if settings.namespace.endswith("/") else settings.namespace + "/"
        self._ns = ns.encode()
        self._lease_ttl = max(1, math.ceil(settings.ttl))
        self._lock = asyncio.Lock()  # lease grant / member put / keepalive
        self._member: MemberInfo | None = None
        self._lease: int | None = None
        self._lease_acked: float | None = None  # monotonic send time of last acknowledged renewal
        self._published = False  # member key put under the current lease
        self._dirty = True  # member info changed since it was put
        self._keepalive: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False

    # plumbing
    def _key(self, key: str) -> bytes:
        return self._ns + key.encode()

    def _client(self, index: int) -> Any:
        if self._closed:
            raise CoordinationError("etcd coordinator is closed")
        client = self._clients[index]
        if client is None:
            host, port = self._endpoints[index]
            client = endpoint_client(host, port, self.settings.tls)
            self._clients[index] = client
        return client

    def _failed(self, index: int) -> None:
        """Endpoint ``index`` did not answer: use the next. Said once per SWITCH_SAY_EVERY_S
        at most (cut from every endpoint, a caller switches some 15 times a second)."""
        if self._current != index or len(self._endpoints) < 2:
            return
        self._current = (index + 1) % len(self._endpoints)
        self._switches += 1
        now = time.monotonic()
        if now - self._switch_said < SWITCH_SAY_EVERY_S:
            return
        host, port = self._endpoints[self._current]
        log.info("etcd: switching to endpoint %s:%s (%d switch(es) since the last such line)",
                 host, port, self._switches)
        self._switch_said, self._switches = now, 0

    @contextlib.contextmanager
    def _unavailable_on_timeout(self, op: str) -> Iterator[None]:
        try:
            yield
        except TimeoutError as e:
            raise CoordinationUnavailable(
                f"etcd {op}: no answer within {self.settings.retry_timeout}s") from e

    async def _call(self, op: str, fn: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run ``fn(client)`` within retry_timeout, trying the endpoints in order."""
        budget = self.settings.retry_timeout
        per_attempt = budget / len(self._endpoints)
        last: BaseException | None = None
        tries = 0
        try:
            async with asyncio.timeout(budget):
                while True:
                    index = self._current
                    try:
                        async with asyncio.timeout(per_attempt):
                            return await fn(self._client(index))
                    except (aetcd.ClientError, rpc.BaseError, rpc.RpcError, OSError,
                            TimeoutError) as e:
                        if isinstance(e, aetcd.RevisionCompactedError):
                            raise CoordinationError(f"etcd {op}: {e}") from e
                        if _lease_not_found(e):
                            raise _LeaseGone(f"etcd {op}: {e}") from e
                        if _definite(e):
                            raise CoordinationError(f"etcd {op}: {e}") from e
                        last = e
                        self._failed(index)
                    tries += 1
                    if tries % len(self._endpoints) == 0:  # every endpoint failed: back off
                        await asyncio.sleep(min(0.05 * tries, budget / 4))
        except TimeoutError as e:
            raise CoordinationUnavailable(
                f"etcd {op}: no answer within {budget}s (last error: {last!r})") from e

    # lifecycle
    async def connect(self) -> None:
        await self._call("connect", lambda c: c.get(self._ns))

    async def close(self) -> None:
        if self._closed:
            return
        task, self._keepalive = self._keepalive, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        lease, self._lease = self._lease, None
        self._published, self._lease_acked = False, None
        if lease is not None:  # leave now rather than after ttl; best effort, within budget
            try:
                async with asyncio.timeout(self.settings.retry_timeout * 0.8):
                    await self._call("revoke lease", lambda c: c.revoke_lease(lease))
            except (CoordinationError, TimeoutError) as e:
                log.warning("etcd: could not revoke lease %x on close (it expires within "
                            "its ttl): %r", lease, e)
        self._closed = True
        for client in self._clients:
            if client is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.settings.retry_timeout):
                        await client.close()
        self._clients = [None] * len(self._endpoints)

    # membership
    async def join(self, member: MemberInfo) -> None:
        if self._member is not None and self._member.name != member.name:
            raise CoordinationError(f"already joined as {self._member.name!r}")
        if self._closed:
            raise CoordinationError("etcd coordinator is closed")
        self._member, self._dirty = member, True
        try:
            with self._unavailable_on_timeout("join"):
                async with asyncio.timeout(self.settings.retry_timeout), self._lock:
                    await self._publish()
        finally:
            if self._keepalive is None:
                self._keepalive = asyncio.create_task(self._keepalive_loop(),
                                                      name=f"etcd-keepalive-{member.name}")

    def membership_age(self) -> float:
        if not self._published or self._lease_acked is None:
            return math.inf
        return time.monotonic() - self._lease_acked

    async def _publish(self) -> None:
        """Grant a lease if we have none, then put the member key under it. Holds _lock."""
        member = self._member
        assert member is not None
        for attempt in (1, 2):  # a lease that vanished under us is replaced once
            if self._lease is None:
                sent = time.monotonic()
                granted = await self._call("grant lease", lambda c: c.lease(self._lease_ttl))
                self._lease, self._lease_acked, self._published = int(granted.id), sent, False
                log.info("etcd: granted lease %x (ttl %ss) for %s", self._lease, granted.ttl,
                         member.name)
            if self._published and not self._dirty:
                return
            try:
                await self._put_member(member, self._lease)
            except _LeaseGone:
                self._lease = self._lease_acked = None
                self._published = False
                if attempt == 2:
                    raise
                continue
            self._published, self._dirty = True, False
            return

    async def _put_member(self, member: MemberInfo, lease: int) -> None:
        """Put members/<name> under our lease if it is absent or already ours: a key held by
        another lease (a previous incarnation still alive, or a duplicate name) is refused."""
        key, value = self._key(f"members/{member.name}"), member.to_bytes()

        async def txn(c: Any) -> bool:
            t = c.transactions
            ok, responses = await c.transaction(compare=[t.create(key) == 0],
                                                success=[t.put(key, value, lease=lease)],
                                                failure=[t.get(key)])
            if ok:
                return True
            current = responses[0] if responses else []
            if not current or int(current[0][1].lease) != lease:
                return False
            ok, _ = await c.transaction(compare=[_LeaseIs(key, lease)],
                                        success=[t.put(key, value, lease=lease)], failure=[])
            return bool(ok)

        if not await self._call("join", txn):
            raise CoordinationError(f"etcd join: members/{member.name} is held by another "
                                    "lease; retrying in the background until it expires")

    async def confirm(self) -> None:
        if self._member is None:
            raise CoordinationError("etcd confirm: join first")
        with self._unavailable_on_timeout("confirm"):
            async with asyncio.timeout(self.settings.retry_timeout):
                await self._renew()
        if self._lease_acked is None or not self._published:
            raise CoordinationUnavailable("etcd confirm: membership lost, re-joining")

    async def _renew(self) -> None:
        async with self._lock:
            if self._member is None:
                return
            lease = self._lease
            if lease is not None:
                sent = time.monotonic()
                try:
                    reply = await self._call("keepalive", lambda c: c.refresh_lease(lease))
                    ttl = None if reply is None else int(reply.TTL)
                except _LeaseGone:  # said as an error rather than as a TTL of 0
                    ttl = 0
                if ttl is None:
                    raise CoordinationUnavailable("etcd keepalive: stream ended without a reply")
                if ttl <= 0:
                    log.warning("etcd: lease %x of %s is gone; re-joining with a new lease",
                                lease, self._member.name)
                    self._lease = self._lease_acked = None
                    self._published = False
                else:
                    self._lease_acked = sent
            await self._publish()

    async def _keepalive_loop(self) -> None:
        period = self.settings.ttl / 3
        soon = min(period, self.settings.retry_timeout / 4)  # after a failure
        while True:
            delay = period
            try:
                await self._renew()
            except CoordinationUnavailable as e:
                log.info("etcd: keepalive failed (age %.1fs): %s", self.membership_age(), e)
                delay = soon
            except CoordinationError as e:
                log.warning("etcd: keepalive refused: %s", e)
            except Exception as e:  # the membership's only renewer must not die: said, retried
                log.error("etcd: keepalive failed unexpectedly: %s: %s", type(e).__name__, e,
                          exc_info=e)
                delay = soon
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def _lease_for_action(self, op: str) -> tuple[int, str]:
        if self._member is None:
            raise CoordinationError(f"etcd {op}: join first")
        if self._lease is None or not self._published:
            self._wake.set()
            raise CoordinationUnavailable(f"etcd {op}: membership lost, re-joining")
        return self._lease, self._member.name

    async def members(self) -> list[MemberInfo]:
        prefix = self._key("members/")
        found = await self._call("members", lambda c: c.get_prefix(prefix))
        out: list[MemberInfo] = []
        for kv in found:
            try:
                out.append(MemberInfo.from_bytes(kv.value))
            except (ValueError, KeyError, TypeError) as e:
                log.warning("etcd: ignoring malformed member %r: %s", kv.key, e)
        return out

    # election
    async def campaign(self, election: str) -> bool:
        lease, name = self._lease_for_action("campaign")
        key = self._key(f"elections/{election}")

        async def txn(c: Any) -> tuple[bool, list[Any]]:
            t = c.transactions
            ok, responses = await c.transaction(compare=[t.create(key) == 0],
                                                success=[t.put(key, name.encode(), lease=lease)],
                                                failure=[t.get(key)])
            return bool(ok), list(responses)

        try:
            ok, responses = await self._call("campaign", txn)
        except _LeaseGone as e:
            self._wake.set()
            raise CoordinationUnavailable(f"etcd campaign: membership lost: {e}") from e
        if ok:
            return True
        # already held: by us (an earlier attempt that timed out may have landed) or by another
        current = responses[0] if responses else []
        return bool(current) and int(current[0][1].lease) == lease

    async def leader(self, election: str) -> str | None:
        got = await self._call("leader", lambda c: c.get(self._key(f"elections/{election}")))
        return None if got is None else bytes(got.value).decode()

    async def resign(self, election: str) -> None:
        if self._lease is None:
            return  # no lease: we hold nothing
        lease, key = self._lease, self._key(f"elections/{election}")
        await self._call("resign", lambda c: c.transaction(
            compare=[_LeaseIs(key, lease)], success=[c.transactions.delete(key)], failure=[]))

    # keys
    async def get(self, key: str) -> Versioned | None:
        got = await self._call("get", lambda c: c.get(self._key(key)))
        return None if got is None else Versioned(bytes(got.value), int(got.mod_revision))

    async def compare_and_set(self, key: str, value: bytes, version: int | None) -> bool:
        if version is not None and version <= 0:
            return False  # no existing key has such a revision
        k = self._key(key)
        tries = 0

        async def txn(c: Any) -> bool:
            nonlocal tries
            tries += 1
            t = c.transactions
            cmp = t.create(k) == 0 if version is None else t.mod(k) == version
            ok, _ = await c.transaction(compare=[cmp], success=[t.put(k, value)], failure=[])
            return bool(ok)

        ok = await self._call("compare_and_set", txn)
        if not ok and tries > 1:
            raise CoordinationUnavailable(
                f"etcd compare_and_set {key!r}: an attempt failed in flight and may have landed")
        return ok

    async def delete(self, key: str) -> None:
        await self._call("delete", lambda c: c.delete(self._key(key)))

    # watches
    async def watch(self, prefix: str) -> AsyncIterator[WatchEvent]:
        start = self._key(prefix)
        n = len(self._ns)
        backoff = 0.05
        while not self._closed:
            try:  # list, then watch from the listed revision + 1: nothing falls in between
                listed = await self._call("watch list", lambda c: c.get_prefix(start))
                revision = int(listed.header.revision)
                watcher = await self._call("watch", functools.partial(
                    _watch_prefix, prefix=start, start_revision=revision + 1))
            except CoordinationError as e:
                log.info("etcd: watch %r not established yet: %s", prefix, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_timeout)
                continue
            backoff = 0.05
            try:
                yield WatchEvent("resync", state={
                    bytes(kv.key)[n:].decode(): bytes(kv.value) for kv in listed})
                async for ev in watcher:
                    key = bytes(ev.kv.key)[n:].decode()
                    if ev.kind == "PUT":
                        yield WatchEvent("put", key=key, value=bytes(ev.kv.value))
                    else:
                        yield WatchEvent("delete", key=key)
            except (aetcd.ClientError, rpc.BaseError, rpc.RpcError, OSError) as e:
                log.info("etcd: watch %r broken (%r); re-establishing", prefix, e)
                self._failed(self._current)
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.settings.retry_timeout):
                        await watcher.cancel()
