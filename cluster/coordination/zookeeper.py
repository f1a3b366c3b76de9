"""ZooKeeper backend of the coordination contract (see base.py), on ``kazoo``.

kazoo is threaded; this module only uses its ``*_async`` calls, whose results are bridged to
asyncio futures (``loop.call_soon_threadsafe``), so the event loop never blocks; the only calls
made in a worker thread are ``start``/``stop``/``close`` of the client.

Layout: a key ``a/b`` is the znode ``<namespace>/a/b`` (parents are created as empty persistent
znodes when needed). Keys must be non-empty paths without empty components.

* ``members/<name>``: an ephemeral znode of this member's session (session timeout = ttl);
* ``elections/<election>``: an ephemeral znode created only if absent, value = leader's name;
* ``Versioned.version`` is the znode's ``mzxid`` (the zxid of its last write): it changes on
  every write, also across a delete and re-create. ``compare_and_set`` reads the znode and
  writes with the znode's data version read, so it is atomic against concurrent writers; the
  only residue is a delete *and* re-create landing between that read and the write.

Membership: an owned background task checks every ``ttl / 3`` (and at once after a connection
state change) that ``members/<name>`` exists and is owned by the current session, re-creating
it after a new session. Each successful check is a request the server answered within the
session, so ``membership_age()`` counts from the moment the last such check was *sent*:
while the connection is SUSPENDED it keeps growing, after the session is LOST it is ``inf``
until the member node is re-created in the new session. A member node held by another
session (a previous incarnation not yet expired, or a duplicate name) is never taken over:
``join`` raises CoordinationError and the task retries until that node is gone.
Reads are served by the server the session is connected to (no ``sync``): in an ensemble they
may lag the leader briefly (etcd reads are linearizable). The server must be able to grant a
session timeout of ``ttl`` (``minSessionTimeout <= ttl * 1000 <= maxSessionTimeout``): a
smaller negotiated timeout would let it expire the member before ``may_act`` turns False. kazoo
does not expose the negotiated value, so this is not checked.

Watches: ``watch(prefix)`` watches the *direct children* of the znode holding the prefix (for
``campaigns/`` that is ``campaigns``; for ``campaigns/ab`` it is the children of ``campaigns``
whose name starts with ``ab``): a keys tree deeper than one level is not reported (etcd reports
it). It uses one-shot children and data watches re-armed at every read and keeps a cache, so
events are computed from differences: rapid successive writes to one key may be coalesced into
one ``put`` of the latest value (etcd reports every revision). kazoo drops every watch when the
connection is suspended; at every (re)connection the watch lists again and yields a
``resync``. The first event is always a ``resync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import (  # type: ignore[import-untyped]
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    SessionExpiredError,
)
from kazoo.protocol.states import EventType, KazooState  # type: ignore[import-untyped]
from kazoo.retry import KazooRetry  # type: ignore[import-untyped]

from .base import (
    CoordinationError,
    CoordinationSettings,
    CoordinationUnavailable,
    Coordinator,
    MemberInfo,
    Versioned,
    WatchEvent,
)
from .zk_security import zk_security

log = logging.getLogger(__name__)

_TRANSIENT = (ConnectionLoss, SessionExpiredError, OperationTimeoutError)
_ANSWERS = (NoNodeError, NodeExistsError, BadVersionError, NotEmptyError)  # for the caller

# messages on a watch's queue
_ZK_EVENT, _STATE, _CLOSED = "zk", "state", "closed"


def _split_prefix(prefix: str) -> tuple[str, str]:
    """``a/b/c`` -> (``a/b``, ``c``); ``a/b/`` -> (``a/b``, ``""``): the key of the watched
    znode and the prefix its children's names must start with."""
    directory, _, name = prefix.lstrip("/").rpartition("/")
    return directory.strip("/"), name


def _stop_and_close(zk: Any) -> None:
    try:
        zk.stop()
    finally:
        zk.close()


class ZooKeeperCoordinator(Coordinator):
    def __init__(self, settings: CoordinationSettings) -> None:
        super().__init__(settings)
        self._root = "/" + settings.namespace.strip("/")
        self._zk: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._member: MemberInfo | None = None
        self._confirmed_at: float | None = None
        self._membership: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._watch_queues: set[asyncio.Queue[tuple[str, Any, Any]]] = set()
        self._closed = False

    # plumbing
    def _path(self, key: str) -> str:
        key = key.strip("/")
        if not key or "//" in key:
            raise ValueError(f"key {key!r}: expected a non-empty path without empty components")
        return f"{self._root.rstrip('/')}/{key}"

    def _client(self) -> Any:
        if self._closed:
            raise CoordinationError("zookeeper coordinator is closed")
        if self._zk is None:
            raise CoordinationError("zookeeper coordinator: connect first")
        return self._zk

    async def _result(self, async_result: Any) -> Any:
        """Await a kazoo IAsyncResult without blocking the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle() -> None:
            if future.done():
                return
            try:
                future.set_result(async_result.get_nowait())
            except Exception as e:
                future.set_exception(e)

        def done(_: Any) -> None:  # in a kazoo thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle)

        async_result.rawlink(done)
        return await future

    async def _call(self, op: str, start: Callable[[Any], Any], *,
                    idempotent: bool = True) -> Any:
        """Run ``start(client)`` (a kazoo ``*_async`` call) within retry_timeout.

        Idempotent calls are retried after a connection loss within the budget; the others
        raise CoordinationUnavailable at once (they may have landed). NoNode, NodeExists,
        BadVersion and NotEmpty are passed through to the caller.
        """
        budget = self.settings.retry_timeout
        last: BaseException | None = None
        try:
            async with asyncio.timeout(budget):
                while True:
                    try:
                        return await self._result(start(self._client()))
                    except _ANSWERS:
                        raise
                    except _TRANSIENT as e:
                        last = e
                        if not idempotent:
                            raise CoordinationUnavailable(
                                f"zookeeper {op}: {type(e).__name__}; it may have landed") from e
                    except ConnectionClosedError as e:
                        raise CoordinationError(f"zookeeper {op}: client closed") from e
                    except KazooException as e:
                        raise CoordinationError(f"zookeeper {op}: {type(e).__name__} {e}") from e
                    with contextlib.suppress(TimeoutError):  # wait for the connection
                        async with asyncio.timeout(0.1):
                            await self._connected.wait()
                    await asyncio.sleep(0.02)
        except TimeoutError as e:
            raise CoordinationUnavailable(
                f"zookeeper {op}: no answer within {budget}s (last error: {last!r})") from e

    def _session_id(self) -> int:
        client_id = self._client().client_id
        if client_id is None:
            raise CoordinationUnavailable("zookeeper: not connected")
        return int(client_id[0])

    def _on_state(self, state: Any) -> None:  # in kazoo's connection thread
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._loop.call_soon_threadsafe(self._state_changed, state)

    def _state_changed(self, state: Any) -> None:
        log.info("zookeeper: connection %s", state)
        if state == KazooState.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
        if state == KazooState.LOST:
            self._confirmed_at = None  # the session and its ephemeral nodes are gone
        self._wake.set()
        for queue in self._watch_queues:
            queue.put_nowait((_STATE, state, None))

    # lifecycle
    async def connect(self) -> None:
        if self._zk is None:
            self._loop = asyncio.get_running_loop()
            retry = KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_jitter=0.2,
                               max_delay=min(1.0, self.settings.ttl / 3))
            zk = KazooClient(hosts=",".join(self.settings.endpoints), timeout=self.settings.ttl,
                             randomize_hosts=False, connection_retry=retry,
                             **zk_security(self.settings))
            zk.add_listener(self._on_state)
            self._zk = zk
            await asyncio.to_thread(zk.start_async)
        self._client()
        try:
            async with asyncio.timeout(self.settings.retry_timeout):
                await self._connected.wait()
        except TimeoutError as e:
            raise CoordinationUnavailable(
                f"zookeeper: not connected to {self.settings.endpoints} within "
                f"{self.settings.retry_timeout}s") from e

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        task, self._membership = self._membership, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in self._watch_queues:
            queue.put_nowait((_CLOSED, None, None))
        self._confirmed_at = None
        zk, self._zk = self._zk, None
        if zk is None:
            return
        zk.remove_listener(self._on_state)
        # stop() closes the session (the server deletes our ephemeral nodes at once) and joins
        # kazoo's threads. Against an unresponsive server that takes up to a session timeout:
        # we wait retry_timeout, then leave the worker thread to finish on its own.
        try:
            async with asyncio.timeout(self.settings.retry_timeout):
                await asyncio.to_thread(_stop_and_close, zk)
        except TimeoutError:
            log.warning("zookeeper: client still stopping after %ss; finishing in the "
                        "background", self.settings.retry_timeout)

    # membership
    async def join(self, member: MemberInfo) -> None:
        if self._member is not None and self._member.name != member.name:
            raise CoordinationError(f"already joined as {self._member.name!r}")
        self._client()
        self._member = member
        try:
            async with asyncio.timeout(self.settings.retry_timeout):
                await self._confirm(update=True)
        except TimeoutError as e:
            raise CoordinationUnavailable("zookeeper join: no answer in time") from e
        finally:
            if self._membership is None:
                self._membership = asyncio.create_task(self._membership_loop(),
                                                       name=f"zk-membership-{member.name}")

    def membership_age(self) -> float:
        if self._confirmed_at is None:
            return math.inf
        return time.monotonic() - self._confirmed_at

    async def confirm(self) -> None:
        """A sync first: a follower cut from its leader still answers reads from what it
        has until it gives up on the leader (ZooKeeper's syncLimit), and a sync goes through the
        leader. Then the member node checked in this session, as the background check does."""
        if self._member is None:
            raise CoordinationError("zookeeper confirm: join first")
        try:
            async with asyncio.timeout(self.settings.retry_timeout):
                await self._call("confirm", lambda zk: zk.sync_async(self._path("members")))
                await self._confirm()
        except TimeoutError as e:
            raise CoordinationUnavailable(
                f"zookeeper confirm: no answer within {self.settings.retry_timeout}s") from e

    async def _confirm(self, *, update: bool = False) -> None:
        """Check that our member node exists in this session, (re)create it if not."""
        member = self._member
        assert member is not None
        path, data = self._path(f"members/{member.name}"), member.to_bytes()
        session = self._session_id()
        sent = time.monotonic()
        stat = await self._call("membership", lambda zk: zk.exists_async(path))
        if stat is None:
            try:
                await self._call("join", lambda zk: zk.create_async(
                    path, data, ephemeral=True, makepath=True), idempotent=False)
            except NodeExistsError:
                return  # created meanwhile (by an earlier attempt, or another process): recheck
            log.info("zookeeper: member %s joined (session %x)", member.name, session)
        elif stat.ephemeralOwner != session:  # a previous incarnation, or a duplicate name
            raise CoordinationError(
                f"zookeeper join: members/{member.name} is held by session "
                f"{stat.ephemeralOwner:x}, not ours ({session:x}); retrying in the background "
                "until it expires")
        elif update:
            await self._call("join", lambda zk: zk.set_async(path, data))
        self._confirmed_at = sent

    async def _membership_loop(self) -> None:
        period = self.settings.ttl / 3
        while True:
            delay = period
            try:
                await self._confirm()
            except CoordinationUnavailable as e:
                log.info("zookeeper: membership check failed (age %.1fs): %s",
                         self.membership_age(), e)
                delay = min(period, self.settings.retry_timeout / 4)
            except CoordinationError as e:
                log.warning("zookeeper: membership check refused: %s", e)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _children_data(self, directory: str, names: list[str],
                             watch: Any = None) -> dict[str, tuple[bytes, int]]:
        """Data and mzxid of the children ``names`` of ``directory`` (those still there)."""
        zk = self._client()
        pending = [(name, zk.get_async(f"{directory}/{name}", watch=watch)) for name in names]
        out: dict[str, tuple[bytes, int]] = {}
        try:
            async with asyncio.timeout(self.settings.retry_timeout):
                for name, result in pending:
                    with contextlib.suppress(NoNodeError):
                        data, stat = await self._result(result)
                        out[name] = (bytes(data), int(stat.mzxid))
        except (TimeoutError, *_TRANSIENT) as e:
            raise CoordinationUnavailable(f"zookeeper: reading {directory}: {e!r}") from e
        except KazooException as e:
            raise CoordinationError(f"zookeeper: reading {directory}: {e!r}") from e
        return out

    async def members(self) -> list[MemberInfo]:
        directory = self._path("members")
        try:
            names = await self._call("members", lambda zk: zk.get_children_async(directory))
        except NoNodeError:
            return []
        out: list[MemberInfo] = []
        for name, (data, _) in sorted((await self._children_data(directory, names)).items()):
            try:
                out.append(MemberInfo.from_bytes(data))
            except (ValueError, KeyError, TypeError) as e:
                log.warning("zookeeper: ignoring malformed member %r: %s", name, e)
        return out

    # election
    async def campaign(self, election: str) -> bool:
        if self._member is None:
            raise CoordinationError("zookeeper campaign: join first")
        if self._confirmed_at is None:
            self._wake.set()
            raise CoordinationUnavailable("zookeeper campaign: membership lost, re-joining")
        path, name = self._path(f"elections/{election}"), self._member.name.encode()
        session = self._session_id()
        try:
            await self._call("campaign", lambda zk: zk.create_async(
                path, name, ephemeral=True, makepath=True), idempotent=False)
            return True
        except NodeExistsError:
            pass
        # held: by us (an earlier attempt that timed out may have landed) or by another
        stat = await self._call("campaign", lambda zk: zk.exists_async(path))
        return stat is not None and stat.ephemeralOwner == session

    async def leader(self, election: str) -> str | None:
        path = self._path(f"elections/{election}")
        try:
            data, _ = await self._call("leader", lambda zk: zk.get_async(path))
        except NoNodeError:
            return None
        return bytes(data).decode()

    async def resign(self, election: str) -> None:
        path, session = self._path(f"elections/{election}"), self._session_id()
        stat = await self._call("resign", lambda zk: zk.exists_async(path))
        if stat is None or stat.ephemeralOwner != session:
            return
        with contextlib.suppress(NoNodeError, BadVersionError):
            await self._call("resign", lambda zk: zk.delete_async(path, version=stat.version))

    # keys
    async def get(self, key: str) -> Versioned | None:
        path = self._path(key)
        try:
            data, stat = await self._call("get", lambda zk: zk.get_async(path))
        except NoNodeError:
            return None
        return Versioned(bytes(data), int(stat.mzxid))

    async def compare_and_set(self, key: str, value: bytes, version: int | None) -> bool:
        path = self._path(key)
        if version is None:
            try:
                await self._call("compare_and_set", lambda zk: zk.create_async(
                    path, value, makepath=True), idempotent=False)
                return True
            except NodeExistsError:
                return False
        try:
            _, stat = await self._call("compare_and_set", lambda zk: zk.get_async(path))
            if int(stat.mzxid) != version:
                return False
            await self._call("compare_and_set", lambda zk: zk.set_async(
                path, value, version=stat.version), idempotent=False)
            return True
        except (NoNodeError, BadVersionError):
            return False

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await self._call("delete", lambda zk: zk.delete_async(path))
        except NoNodeError:
            return
        except NotEmptyError as e:
            raise CoordinationError(f"zookeeper delete {key!r}: it has children") from e

    async def watch(self, prefix: str) -> AsyncIterator[WatchEvent]:
        dir_key, name_prefix = _split_prefix(prefix)
        directory = self._path(dir_key) if dir_key else self._root
        child_prefix = directory.rstrip("/") + "/"
        queue: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def on_watch(event: Any) -> None:  # in a kazoo thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, (_ZK_EVENT, event.type, event.path))

        def key_of(name: str) -> str:
            return f"{dir_key}/{name}" if dir_key else name

        cache: dict[str, tuple[bytes, int]] = {}  # child name -> (value, mzxid)
        resync = True
        self._watch_queues.add(queue)
        try:
            while not self._closed:
                events: list[WatchEvent] = []
                try:
                    if resync:
                        while not queue.empty():  # superseded by the listing below
                            if queue.get_nowait()[0] == _CLOSED:
                                return
                        cache = await self._list(directory, name_prefix, on_watch)
                        resync = False
                        events.append(WatchEvent("resync", state={
                            key_of(n): v for n, (v, _) in cache.items()}))
                    else:
                        kind, what, path = await queue.get()
                        if kind == _CLOSED:
                            return
                        if kind == _STATE and what == KazooState.CONNECTED:
                            continue  # a pending resync is retried until connected anyway
                        if kind == _STATE or what == EventType.NONE:
                            resync = True  # kazoo dropped the watches; list again when back
                            continue
                        if path == directory:
                            fresh = await self._list(directory, name_prefix, on_watch,
                                                     known=cache)
                        elif path and path.startswith(child_prefix):
                            name = path[len(child_prefix):]
                            fresh = dict(cache)
                            fresh.pop(name, None)
                            fresh.update(await self._children_data(directory, [name], on_watch))
                        else:
                            continue
                        for name in cache.keys() - fresh.keys():
                            events.append(WatchEvent("delete", key=key_of(name)))
                        for name, (value, mzxid) in fresh.items():
                            if cache.get(name, (b"", -1))[1] != mzxid:
                                events.append(WatchEvent("put", key=key_of(name), value=value))
                        cache = fresh
                except CoordinationError as e:
                    log.info("zookeeper: watch %r interrupted (%s); listing again", prefix, e)
                    resync = True
                    with contextlib.suppress(TimeoutError):  # a state change ends the wait
                        async with asyncio.timeout(0.2):
                            await self._connected.wait()
                    await asyncio.sleep(0.05)
                    continue
                for event in events:
                    yield event
        finally:
            self._watch_queues.discard(queue)

    async def _list(self, directory: str, name_prefix: str, watch: Any, *,
                    known: dict[str, tuple[bytes, int]] | None = None,
                    ) -> dict[str, tuple[bytes, int]]:
        """Children of ``directory`` matching the prefix, arming the children watch and a data
        watch on each child read (``known`` children are not read again)."""
        try:
            names = await self._call("watch", lambda zk: zk.get_children_async(
                directory, watch=watch))
        except NoNodeError:  # arm a watch for its creation; if it appeared meanwhile, list again
            if await self._call("watch", lambda zk: zk.exists_async(directory, watch=watch)):
                return await self._list(directory, name_prefix, watch, known=known)
            return {}
        names = [n for n in names if n.startswith(name_prefix)]
        known = known or {}
        out = {n: known[n] for n in names if n in known}
        out.update(await self._children_data(
            directory, [n for n in names if n not in known], watch))
        return out
