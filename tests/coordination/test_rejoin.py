"""A node killed with -9 and started again within its ttl finds its name still held by the dead
incarnation's lease (etcd) or session (ZooKeeper). ``open_and_join`` must wait for it to expire
and then join, on both real servers, leaving no coordinator of a failed attempt behind (one that
kept retrying in the background took the name for itself, and the node never joined)."""

from __future__ import annotations

import asyncio
import time

import pytest

from cluster.coordination.base import Coordinator, MemberInfo
from nodes.membership import open_and_join
from tests.coordination.conftest import TTL, Backend

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def member(name: str) -> MemberInfo:
    return MemberInfo(name=name, site="paris", host=f"{name}.lab", carriers=("sms",), capacity=4)


async def test_a_restarted_node_joins_once_its_dead_incarnation_expires(backend: Backend) -> None:
    proxy = await backend.proxy()
    dead = await backend.open(proxy.endpoint)
    await dead.join(member("n1"))
    await proxy.cut()  # kill -9: no revoke, no session close; the name stays held up to ttl
    attempts: list[Coordinator] = []

    async def open_one() -> Coordinator:
        attempts.append(await backend.open())
        return attempts[-1]

    started = time.monotonic()
    alive = await open_and_join(open_one, member("n1"), deadline_s=4 * TTL, pause_s=0.2)
    waited = time.monotonic() - started
    assert len(attempts) > 1, "the name was free at once: nothing was tested"
    assert waited <= TTL + 3, f"joined {waited:.1f} s after the restart (ttl {TTL} s)"
    observer = await backend.open()
    [seen] = [m for m in await observer.members() if m.name == "n1"]
    assert seen == member("n1")
    assert alive.may_act(0.0)
    # The failed attempts were closed: none renews anything, so the member survives only
    # through the one returned; once it leaves, the name is free again within the ttl.
    await alive.close()
    for _ in range(int((TTL + 3) / 0.2)):
        if all(m.name != "n1" for m in await observer.members()):
            break
        await asyncio.sleep(0.2)
    assert all(m.name != "n1" for m in await observer.members()), \
        "a failed attempt's coordinator still holds n1"
