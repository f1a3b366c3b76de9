"""Flow control shared by the carrier adapters (and the simulators' throttling).

* :class:`TokenBucket` limits a rate (messages per second) with a burst capacity.
* :class:`FlowControl` combines an in-flight window (a semaphore: at most ``window`` messages
  waiting for the carrier's answer) with an optional rate limit, and bounds how long a caller may
  wait locally for both (``max_wait_s``; ``None`` waits as long as it takes).

The window is taken before the token, so a message holding a window slot is the one spaced by
the rate: a freed slot never releases a burst of messages that took their tokens while queued.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar


class LocalBusy(Exception):
    """No window slot or rate token became free within ``max_wait_s``."""


class TokenBucket:
    """``rate_per_s`` tokens per second, at most ``burst`` stored (default: one second's worth,
    at least one). A rate of 0 never grants a token (the simulators use it to throttle all)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not math.isfinite(rate_per_s) or rate_per_s < 0:
            raise ValueError(f"rate_per_s must be a finite number >= 0, not {rate_per_s!r}")
        if burst is None:
            burst = max(1.0, rate_per_s) if rate_per_s > 0 else 0.0
        if not math.isfinite(burst) or burst < 0:
            raise ValueError(f"burst must be a finite number >= 0, not {burst!r}")
        self.rate_per_s = rate_per_s
        self.capacity = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_s)

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def try_acquire(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens now if they are there; never waits."""
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def try_acquire_now(self) -> bool:
        """Take one token now if one is there and nobody waits for one (``acquire``'s order:
        a caller here never overtakes one queued there); never waits."""
        return not self._lock.locked() and self.try_acquire()

    async def acquire(self, n: float = 1.0) -> None:
        """Wait until ``n`` tokens are there and take them; callers are served in order."""
        if self.rate_per_s <= 0 or n > self.capacity:
            raise ValueError(f"{n} token(s) can never be granted at {self.rate_per_s}/s "
                             f"with a burst of {self.capacity}")
        async with self._lock:
            while True:
                self._refill()
                if self._tokens >= n:
                    self._tokens -= n
                    return
                await asyncio.sleep((n - self._tokens) / self.rate_per_s)


def check_flow(window: int, rate_per_s: float | None, max_wait_s: float | None) -> None:
    """Refuse a flow's settings that cannot work, naming the setting (ValueError)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, not {window!r}")
    if rate_per_s is not None and rate_per_s <= 0:
        raise ValueError(f"rate_per_s must be > 0 or None, not {rate_per_s!r}")
    if max_wait_s is not None and max_wait_s < 0:
        raise ValueError(f"max_wait_s must be >= 0 or None, not {max_wait_s!r}")


class FlowControl:
    """An in-flight window plus an optional rate limit, entered with ``async with flow.slot()``."""

    def __init__(
        self, window: int, rate_per_s: float | None = None, max_wait_s: float | None = None,
    ) -> None:
        check_flow(window, rate_per_s, max_wait_s)
        self.window = window
        self.max_wait_s = max_wait_s
        self._semaphore = asyncio.Semaphore(window)
        self._bucket = TokenBucket(rate_per_s) if rate_per_s is not None else None
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def slot(self) -> _Slot:
        """Hold one window slot (and one rate token) for the duration of the block.

        Raises :class:`LocalBusy` when they could not be had within ``max_wait_s``."""
        return _Slot(self)

    async def _enter(self) -> None:
        bucket = self._bucket
        if not self._semaphore.locked() and (bucket is None or bucket.try_acquire_now()):
            # A free slot and a token at hand: taken at once, without the timer of the wait
            # below (an asyncio.timeout per message was most of a slot's cost). The token is
            # taken first here, then the free window slot with nothing awaited between: the
            # same result as the wait below, which holds a slot while it waits for a token.
            await self._semaphore.acquire()
        elif self.max_wait_s is None:
            await self._wait_for_slot()
        else:
            try:
                async with asyncio.timeout(self.max_wait_s):
                    await self._wait_for_slot()
            except TimeoutError:
                raise LocalBusy(f"no send slot within {self.max_wait_s} s "
                                f"(window {self.window}, {self._in_flight} in flight)") from None
        self._in_flight += 1

    async def _wait_for_slot(self) -> None:
        await self._semaphore.acquire()
        try:
            if self._bucket is not None:
                await self._bucket.acquire()
        except BaseException:
            self._semaphore.release()
            raise

    def _exit(self) -> None:
        self._in_flight -= 1
        self._semaphore.release()


class _Slot:
    """``FlowControl.slot()``: a class, not an ``asynccontextmanager`` (whose generator cost
    about as much as the rest of a slot)."""

    __slots__ = ("_flow",)

    def __init__(self, flow: FlowControl) -> None:
        self._flow = flow

    async def __aenter__(self) -> None:
        await self._flow._enter()

    async def __aexit__(self, *exc: object) -> None:
        self._flow._exit()


T = TypeVar("T")


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


async def within(fut: asyncio.Future[T], deadline: float) -> T:
    """Await ``fut`` until the loop time ``deadline``: TimeoutError then, set on the future
    itself (a late answer finds it done). One timer and no extra task or waiter future: what
    ``asyncio.wait_for`` costs was measurable per message."""
    if not fut.done():
        handle = asyncio.get_running_loop().call_at(deadline, _expire, fut)
        try:
            return await fut
        finally:
            handle.cancel()
    return fut.result()


class WriteCoalescer:
    """What is written to one stream during one turn of the event loop goes out in a single
    ``write`` (one system call) at the end of that turn, in order: a window of PDUs answered
    together costs one send, not one each."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._writer: asyncio.StreamWriter | None = None
        self._scheduled = False

    def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if self._writer is not writer:
            self.flush()
            self._writer = writer
        self._chunks.append(data)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        chunks, self._chunks = self._chunks, []
        writer = self._writer
        if chunks and writer is not None and not writer.is_closing():
            writer.write(b"".join(chunks) if len(chunks) > 1 else chunks[0])
