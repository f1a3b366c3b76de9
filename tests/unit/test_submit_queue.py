"""The submission queue under the SMPP adapter's ``submit``: window, FIFO, rate, timeouts,
withdrawal and the bind, without a carrier (``write`` is the test's)."""

from __future__ import annotations

import asyncio
import time

import pytest

from nodes.carriers.base import SendResult
from nodes.carriers.submit_queue import Submission, SubmitQueue

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class Wire:
    """The adapter's side: writes (or not, while ``bound`` is False) and the results seen."""

    def __init__(self) -> None:
        self.bound = True
        self.written: list[str] = []
        self.results: dict[str, SendResult] = {}
        self.times: list[float] = []
        self._seq = 0

    def write(self, sub: Submission) -> int:
        if not self.bound:
            return 0
        self._seq += 1
        self.written.append(sub.reference)
        self.times.append(time.monotonic())
        return self._seq

    def put(self, q: SubmitQueue, reference: str) -> Submission:
        return q.put(b"pdu", reference, "+33600000000", False,
                     lambda r: self.results.__setitem__(reference, r))


def queue(wire: Wire, *, window: int = 2, rate: float | None = None,
          max_wait_s: float | None = None, timeout_s: float = 5.0) -> SubmitQueue:
    return SubmitQueue(window=window, rate_per_s=rate, max_wait_s=max_wait_s,
                       timeout_s=timeout_s, write=wire.write)


async def test_the_window_holds_the_rest_in_order_and_an_answer_frees_a_slot() -> None:
    wire = Wire()
    q = queue(wire)
    subs = [wire.put(q, f"r{i}") for i in range(5)]
    assert wire.written == ["r0", "r1"] and q.in_flight == 2 and wire.results == {}
    q.finish(subs[1], SendResult(True))
    assert wire.written == ["r0", "r1", "r2"]
    assert wire.results == {"r1": SendResult(True)}
    assert q.answered(subs[0].seq) is subs[0]
    q.finish(subs[0], SendResult(False, error="ESME_RSYSERR", retryable=True))
    assert wire.written == ["r0", "r1", "r2", "r3"] and q.in_flight == 2
    q.close()


async def test_withdrawn_before_it_is_written_it_never_is_and_after_only_its_callback_goes(
) -> None:
    wire = Wire()
    q = queue(wire, window=1)
    first, second, third = (wire.put(q, f"r{i}") for i in range(3))
    second.cancel()
    first.cancel()  # written already: the message is out, the answer frees the slot
    assert q.in_flight == 1
    q.finish(first, SendResult(True))
    assert wire.written == ["r0", "r2"]  # r1 never
    assert wire.results == {}  # neither callback called
    q.finish(third, SendResult(True))
    assert list(wire.results) == ["r2"]
    q.close()


async def test_no_answer_and_no_bind_time_out_retryable() -> None:
    wire = Wire()
    q = queue(wire, timeout_s=0.05)
    wire.put(q, "answerless")
    wire.bound = False
    wire.put(q, "unbound")
    await asyncio.sleep(0.15)
    assert wire.results == {
        "answerless": SendResult(False, error="no submit_sm_resp within 0.05 s", retryable=True),
        "unbound": SendResult(False, error="no bind to the carrier within 0.05 s",
                              retryable=True)}
    assert q.in_flight == 0
    q.close()


async def test_a_local_wait_past_max_wait_is_refused_retryable() -> None:
    wire = Wire()
    q = queue(wire, window=1, max_wait_s=0.05)
    wire.put(q, "in-flight")
    wire.put(q, "waiting")
    await asyncio.sleep(0.15)
    assert wire.results == {"waiting": SendResult(
        False, error="no send slot within 0.05 s (window 1, 1 in flight)", retryable=True)}
    q.close()


async def test_held_until_the_bind_then_written() -> None:
    wire = Wire()
    wire.bound = False
    q = queue(wire, window=2)
    for i in range(3):
        wire.put(q, f"r{i}")
    assert wire.written == [] and q.in_flight == 2
    wire.bound = True
    q.bound()
    assert wire.written == ["r0", "r1"]
    q.close()


async def test_a_lost_connection_fails_the_written_and_close_finishes_everything() -> None:
    wire = Wire()
    q = queue(wire, window=1)
    wire.put(q, "written")
    wire.put(q, "waiting")
    wire.bound = False
    q.lost("connection lost")
    assert wire.results == {"written": SendResult(False, error="connection lost: connection lost",
                                                  retryable=True)}
    assert q.in_flight == 1  # "waiting" took the slot, held until the bind
    q.close()
    assert wire.results["waiting"] == SendResult(False, error="adapter closed", retryable=True)
    with pytest.raises(RuntimeError, match="closed"):
        wire.put(q, "late")


async def test_the_rate_spaces_writes_past_the_burst() -> None:
    wire = Wire()
    q = queue(wire, window=100, rate=40.0)  # a burst of 40, then one every 25 ms
    start = time.monotonic()
    for i in range(50):
        wire.put(q, f"r{i}")
    assert len(wire.written) == 40
    async with asyncio.timeout(5):
        while len(wire.written) < 50:
            await asyncio.sleep(0.01)
    assert wire.times[-1] - start >= 0.2  # 10 more tokens at 40/s: 0.25 s
    q.close()


async def test_a_callback_that_raises_does_not_stop_the_queue(
        caplog: pytest.LogCaptureFixture) -> None:
    wire = Wire()
    q = queue(wire, window=1)

    def broken(_: SendResult) -> None:
        raise ValueError("caller bug")

    first = q.put(b"pdu", "broken", "+33600000000", False, broken)
    wire.put(q, "next")
    q.finish(first, SendResult(True))
    assert wire.written == ["broken", "next"]
    assert "submission callback failed" in caplog.text
    q.close()
