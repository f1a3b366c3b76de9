"""``Collecting.read_all``: the store observer (the last collector) is read again after a slow
read, so that its snapshot is fresh when a fault follows (the rpo window)."""

from __future__ import annotations

import asyncio

import pytest

from chaos.collect import FRESH_RETRIES, Collecting

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class Timed:
    """A collector whose reads take the given seconds, in turn (the last one after that)."""

    def __init__(self, *seconds: float) -> None:
        self.seconds = list(seconds)
        self.reads = 0

    async def read(self) -> None:
        self.reads += 1
        await asyncio.sleep(self.seconds[min(self.reads, len(self.seconds)) - 1])


async def test_a_slow_read_of_the_last_collector_is_followed_by_a_fresh_one() -> None:
    first, observer = Timed(0.2), Timed(0.2, 0.0)
    await Collecting([first, observer]).read_all()
    assert (first.reads, observer.reads) == (1, 2)  # the others are not read again


async def test_a_quick_read_is_not_repeated_and_a_slow_one_at_most_a_few_times() -> None:
    quick = Timed(0.0)
    await Collecting([quick]).read_all()
    assert quick.reads == 1
    slow = Timed(0.15)
    await Collecting([slow]).read_all()
    assert slow.reads == 1 + FRESH_RETRIES
