"""A node restarted under the same name waits out of the membership until the batches of its
previous life are moved, so that the watchdog treats that life as a dead node and moves them."""

from __future__ import annotations

import asyncio

import pytest

from nodes.membership import wait_previous_life_moved

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class Held:
    """Batches held per owner, released after a number of reads (as the watchdog's move)."""

    def __init__(self, held: dict[str, int], released_after: int | None) -> None:
        self.held, self.released_after, self.reads = held, released_after, 0

    async def batches_in_flight(self) -> dict[str, int]:
        self.reads += 1
        if self.released_after is not None and self.reads > self.released_after:
            self.held = {}
        return dict(self.held)


async def test_nothing_held_joins_at_once() -> None:
    store = Held({"paris-node2": 3}, released_after=None)
    assert await wait_previous_life_moved(store, "paris-node1", "paris", 5.0, 0.01) == 0
    assert store.reads == 1


async def test_waits_until_the_previous_lifes_batches_are_moved() -> None:
    store = Held({"paris-node1": 8, "paris-node2": 3}, released_after=4)
    assert await wait_previous_life_moved(store, "paris-node1", "paris", 5.0, 0.01) == 8
    assert store.reads == 5  # it did wait for the move


async def test_joins_after_the_deadline_when_nothing_moves_them() -> None:
    store = Held({"paris-node1": 2}, released_after=None)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await wait_previous_life_moved(store, "paris-node1", "paris", 0.2, 0.01) == 2
    assert 0.2 <= loop.time() - started < 2.0


async def test_an_unreachable_store_does_not_keep_it_out() -> None:
    class Broken:
        async def batches_in_flight(self) -> dict[str, int]:
            raise OSError("connection refused")

    assert await wait_previous_life_moved(Broken(), "paris-node1", "paris", 5.0, 0.01) == 0
