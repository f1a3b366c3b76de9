"""The coordination contract (cluster/coordination/base.py), run against real etcd and
ZooKeeper servers (see conftest.py): the same tests for both backends.

Timings: ttl 3 s, retry_timeout 1 s. Waits are bounded polls, never fixed sleeps that a slow
machine could outrun; the only timed assertions are the contract's own bounds, with margins.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest

from cluster.coordination.base import (
    CoordinationError,
    CoordinationUnavailable,
    Coordinator,
    MemberInfo,
    WatchEvent,
)
from cluster.coordination.factory import open_coordinator
from tests.coordination.conftest import RETRY_TIMEOUT, TTL, Backend
from tests.coordination.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

SAFETY = 1.0  # may_act(SAFETY) must turn False at age ttl - 1 s


def member(name: str, capacity: int = 4) -> MemberInfo:
    return MemberInfo(name=name, site="paris", host=f"{name}.lab", carriers=("sms", "voice"),
                      capacity=capacity, url=f"http://{name}.lab:8080")


async def names(c: Coordinator) -> set[str]:
    return {m.name for m in await c.members()}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll ``check`` until true; returns the seconds it took, fails after ``timeout``."""
    start = time.monotonic()
    while True:
        try:
            if await check():
                return time.monotonic() - start
        except CoordinationUnavailable:
            pass
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def next_event(events: AsyncIterator[WatchEvent], timeout: float = 15.0) -> WatchEvent:
    async with asyncio.timeout(timeout):
        return await anext(events)


async def close_watch(events: AsyncIterator[WatchEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


async def test_join_and_members(backend: Backend) -> None:
    a, b = await backend.open(), await backend.open()
    assert a.membership_age() == math.inf and not a.may_act(SAFETY)
    await a.join(member("a"))
    await b.join(member("b"))
    assert sorted(await b.members(), key=lambda m: m.name) == [member("a"), member("b")]
    assert a.membership_age() < 0.5 and a.may_act(SAFETY)

    await a.join(member("a", capacity=8))  # same name: updates what it publishes
    assert {m.name: m.capacity for m in await b.members()} == {"a": 8, "b": 4}
    with pytest.raises(CoordinationError) as refused:
        await a.join(member("another-name"))
    assert not isinstance(refused.value, CoordinationUnavailable)


async def test_close_leaves_at_once_and_ends_watches(backend: Backend) -> None:
    a, b = await backend.open(), await backend.open()
    await a.join(member("a"))
    assert await a.campaign("watchdog")
    events = a.watch("items/")
    assert (await next_event(events)).kind == "resync"
    await a.close()
    await a.close()  # idempotent
    assert a.membership_age() == math.inf
    assert await names(b) == set()
    assert await b.leader("watchdog") is None
    with pytest.raises(StopAsyncIteration):
        await next_event(events, timeout=5)


async def test_same_name_waits_until_previous_incarnation_is_gone(backend: Backend) -> None:
    old, new = await backend.open(), await backend.open()
    await old.join(member("a"))
    with pytest.raises(CoordinationError) as refused:  # old may still be acting
        await new.join(member("a", capacity=8))
    assert not isinstance(refused.value, CoordinationUnavailable)
    assert not new.may_act(SAFETY)
    assert {m.capacity for m in await new.members()} == {4}
    await old.close()  # gone: new joins by itself, in the background
    await eventually(lambda: _fresh_member(new, "a"), 10, "new joins after old left")
    assert {m.capacity for m in await new.members()} == {8}


async def test_endpoints_are_tried_in_order(backend: Backend) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings = replace(backend.settings(), endpoints=(dead, backend.server.endpoint))
    c = await open_coordinator(backend.name, settings)
    try:
        await c.join(member("a"))
        assert await c.compare_and_set("k", b"1", None)
        assert await names(c) == {"a"}
    finally:
        await c.close()


async def test_membership_age_and_self_fencing_when_server_frozen(backend: Backend) -> None:
    a = await backend.open()
    await a.join(member("a"))
    for _ in range(5):  # renewed every ttl / 3 while healthy
        await asyncio.sleep(0.4)
        assert a.membership_age() < TTL / 3 + 0.5
        assert a.may_act(SAFETY)

    backend.server.freeze()
    try:
        frozen_at = time.monotonic()
        while a.may_act(SAFETY):
            assert time.monotonic() - frozen_at < TTL, "may_act still True a ttl after freezing"
            await asyncio.sleep(0.02)
        fenced_age = a.membership_age()
        assert TTL - SAFETY <= fenced_age < TTL  # fenced before the server could expire it
        await asyncio.sleep(0.3)
        assert a.membership_age() >= fenced_age + 0.25  # still growing
    finally:
        backend.server.thaw()
    # back: renewed, or re-joined with a new lease/session if the server expired it on resume
    await eventually(lambda: _fresh_member(a, "a"), 15, "membership confirmed after thaw")


async def test_confirm_renews_the_membership_now(backend: Backend) -> None:
    a = await backend.open()
    with pytest.raises(CoordinationError):
        await a.confirm()  # not a member yet
    await a.join(member("a"))
    await asyncio.sleep(TTL / 3 * 0.8)  # the background renewal not due yet
    before = a.membership_age()
    assert before >= 0.5
    await a.confirm()
    assert a.membership_age() < min(0.3, before - 0.3), (before, a.membership_age())
    assert "a" in await names(a)


async def _fresh_member(c: Coordinator, name: str) -> bool:
    return c.may_act(SAFETY) and c.membership_age() < TTL / 3 + 0.5 and name in await names(c)


async def test_every_call_unavailable_within_budget_while_server_frozen(
        backend: Backend) -> None:
    a = await backend.open()
    await a.join(member("a"))
    assert await a.campaign("watchdog")
    assert await a.compare_and_set("k", b"1", None)
    version = (await a.get("k")).version  # type: ignore[union-attr]
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "join": lambda: a.join(member("a")),
        "confirm": a.confirm,
        "members": a.members,
        "campaign": lambda: a.campaign("other"),
        "leader": lambda: a.leader("watchdog"),
        "resign": lambda: a.resign("watchdog"),
        "get": lambda: a.get("k"),
        "compare_and_set": lambda: a.compare_and_set("k", b"2", version),
        "compare_and_set(None)": lambda: a.compare_and_set("new", b"1", None),
        "delete": lambda: a.delete("k"),
        "open_coordinator": lambda: open_coordinator(backend.name, backend.settings()),
    }

    async def timed(call: Callable[[], Awaitable[object]]) -> tuple[float, BaseException | None]:
        start = time.monotonic()
        try:
            await call()
        except CoordinationUnavailable as e:
            return time.monotonic() - start, e
        return time.monotonic() - start, None

    backend.server.freeze()
    try:
        await asyncio.sleep(0.1)
        results = await asyncio.gather(*(timed(call) for call in calls.values()))
        one_by_one = [await timed(calls["get"]), await timed(calls["members"])]
    finally:
        backend.server.thaw()
    for name, (elapsed, error) in zip([*calls, "get", "members"], [*results, *one_by_one],
                                      strict=True):
        assert error is not None, f"{name} did not raise CoordinationUnavailable"
        assert elapsed < 3 * RETRY_TIMEOUT, f"{name} took {elapsed:.2f}s"
    await eventually(lambda: _fresh_member(a, "a"), 15, "membership confirmed after thaw")


async def test_member_expires_when_it_stops_renewing_then_rejoins(backend: Backend) -> None:
    proxy = await backend.proxy()
    a = await backend.open(proxy.endpoint)
    observer = await backend.open()
    await a.join(member("a"))
    assert await names(observer) == {"a"}

    await proxy.cut()  # a's process vanishes for the server: no revoke, no session close
    cut_at = time.monotonic()
    assert await names(observer) == {"a"}, "the member must stay until its ttl runs out"
    await eventually(lambda: _not(a.may_act(SAFETY)), TTL, "a fences itself")
    fenced_after = time.monotonic() - cut_at
    await eventually(lambda: _absent(observer, "a"), TTL + 3, "a expires")
    gone_after = time.monotonic() - cut_at
    assert fenced_after < gone_after, "a must stop acting before the server expires it"
    assert gone_after >= TTL - SAFETY - 0.5, f"expired {gone_after:.1f}s after the cut"

    await proxy.heal()  # a is back: it re-joins by itself, with a new lease / session
    await eventually(lambda: _fresh_member(a, "a"), 15, "a re-joins")
    assert await names(observer) == {"a"}


async def _not(value: bool) -> bool:
    return not value


async def _absent(c: Coordinator, name: str) -> bool:
    return name not in await names(c)


async def test_election_one_winner_and_handover_on_resign(backend: Backend) -> None:
    a, b, outsider = await backend.open(), await backend.open(), await backend.open()
    await a.join(member("a"))
    await b.join(member("b"))
    assert await a.leader("watchdog") is None
    won = await asyncio.gather(a.campaign("watchdog"), b.campaign("watchdog"))
    assert sorted(won) == [False, True]
    first, second = (a, b) if won[0] else (b, a)
    first_name, second_name = ("a", "b") if won[0] else ("b", "a")
    assert await first.campaign("watchdog")  # asking again: still leads
    assert not await second.campaign("watchdog")
    assert await second.leader("watchdog") == first_name
    assert await a.campaign("other-election") != await b.campaign("other-election")

    await second.resign("watchdog")  # not the leader: no effect
    assert await first.leader("watchdog") == first_name
    await first.resign("watchdog")
    assert await a.leader("watchdog") is None
    assert await second.campaign("watchdog")
    assert not await first.campaign("watchdog")
    assert await first.leader("watchdog") == second_name

    with pytest.raises(CoordinationError):  # leadership is bound to a membership
        await outsider.campaign("watchdog")


async def test_election_handover_when_leader_lease_expires(backend: Backend) -> None:
    proxy = await backend.proxy()
    a = await backend.open(proxy.endpoint)
    b = await backend.open()
    await a.join(member("a"))
    await b.join(member("b"))
    assert await a.campaign("watchdog")
    assert not await b.campaign("watchdog")

    await proxy.cut()
    took = await eventually(lambda: b.campaign("watchdog"), TTL + 3, "b wins after a expires")
    assert took >= TTL - SAFETY - 0.5
    assert await b.leader("watchdog") == "b"

    await proxy.heal()
    await eventually(lambda: _fresh_member(a, "a"), 15, "a re-joins")
    assert not await a.campaign("watchdog")
    assert await a.leader("watchdog") == "b"


async def test_compare_and_set(backend: Backend) -> None:
    c, other = await backend.open(), await backend.open()
    assert await c.get("cfg/x") is None
    assert await c.compare_and_set("cfg/x", b"1", None)
    assert not await c.compare_and_set("cfg/x", b"again", None)
    v1 = await c.get("cfg/x")
    assert v1 is not None and v1.value == b"1"
    assert not await c.compare_and_set("cfg/x", b"2", v1.version + 1000)
    assert await c.compare_and_set("cfg/x", b"2", v1.version)
    v2 = await other.get("cfg/x")
    assert v2 is not None and v2.value == b"2" and v2.version != v1.version
    assert not await c.compare_and_set("cfg/x", b"3", v1.version)  # stale version
    assert (await c.get("cfg/x")) == v2

    await c.delete("cfg/x")
    await c.delete("cfg/x")  # idempotent
    assert await c.get("cfg/x") is None
    assert not await c.compare_and_set("cfg/x", b"4", v2.version)  # gone
    assert await c.compare_and_set("cfg/x", b"4", None)
    v4 = await c.get("cfg/x")
    assert v4 is not None and v4.version not in (v1.version, v2.version)  # no ABA
    assert not await c.compare_and_set("cfg/x", b"5", v1.version)

    racers = [c.compare_and_set("cfg/x", f"w{i}".encode(), v4.version) for i in range(3)]
    racers += [other.compare_and_set("cfg/x", f"o{i}".encode(), v4.version) for i in range(3)]
    assert sorted(await asyncio.gather(*racers)) == [False] * 5 + [True]
    created = await asyncio.gather(c.compare_and_set("cfg/y", b"c", None),
                                   other.compare_and_set("cfg/y", b"o", None))
    assert sorted(created) == [False, True]


async def test_watch_yields_puts_and_deletes(backend: Backend) -> None:
    c = await backend.open()
    assert await c.compare_and_set("items/pre", b"0", None)
    assert await c.compare_and_set("elsewhere/x", b"0", None)
    events = c.watch("items/")
    try:
        first = await next_event(events)  # the state when the watch is in place
        assert first == WatchEvent("resync", state={"items/pre": b"0"})

        assert await c.compare_and_set("items/a", b"1", None)
        assert await next_event(events) == WatchEvent("put", key="items/a", value=b"1")
        version = (await c.get("items/a")).version  # type: ignore[union-attr]
        assert await c.compare_and_set("items/a", b"2", version)
        assert await next_event(events) == WatchEvent("put", key="items/a", value=b"2")
        await c.delete("items/a")
        assert await next_event(events) == WatchEvent("delete", key="items/a")
        assert await c.compare_and_set("elsewhere/y", b"1", None)  # not under the prefix
        assert await c.compare_and_set("items/b", b"3", None)
        assert await next_event(events) == WatchEvent("put", key="items/b", value=b"3")
    finally:
        await close_watch(events)


async def test_watch_survives_server_restart(backend: Backend) -> None:
    c = await backend.open()
    await c.join(member("a"))
    assert await c.compare_and_set("items/a", b"1", None)
    events = c.watch("items/")
    try:
        assert await next_event(events) == WatchEvent("resync", state={"items/a": b"1"})
        await asyncio.to_thread(backend.server.stop)  # a crash: SIGKILL
        await asyncio.to_thread(backend.server.start)  # same port, same data dir
        after = await next_event(events, timeout=30)
        assert after == WatchEvent("resync", state={"items/a": b"1"})

        await eventually(lambda: c.compare_and_set("items/b", b"2", None), 10, "write after")
        while (event := await next_event(events)).kind == "resync":  # more resyncs are allowed
            if event.state == {"items/a": b"1", "items/b": b"2"}:
                break  # items/b reported by the state of a later resync
            assert event.state == {"items/a": b"1"}
        else:
            assert event == WatchEvent("put", key="items/b", value=b"2")
    finally:
        await close_watch(events)
    await eventually(lambda: _fresh_member(c, "a"), 15, "membership after the restart")
