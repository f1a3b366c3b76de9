"""The simulator's submission log: every message it accepted, in order, as a carrier that does
not deduplicate delivers it (a chaos checker counts duplicates from it).

Each entry has a sequence number (``seq``, from 1, never reused while the process lives, not
even across ``reset``), the site, the channel, the reference, the simulator's own message id
(the one a non-deduplicating carrier would give: new at every submission), the wall time and
the monotonic time of the acceptance, and ``resubmission``: whether this simulator had already
accepted that reference on that channel.

Memory is bounded: the log is a ring of ``capacity`` entries (default 100,000, about 25 MB at
most; ``--log-capacity``). A reader pages with ``after=<last seq read>``; if the entries it
wants have already left the ring, the page says how many were lost (``lost``), so that the
reader knows its history is incomplete. ``boot`` is a random id of this process: a reader
that sees it change knows the simulator restarted (sequence numbers start again from 1).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Final

DEFAULT_CAPACITY: Final = 100_000
MAX_PAGE: Final = 10_000


@dataclass(frozen=True, slots=True)
class Submission:
    seq: int
    site: str
    channel: str
    reference: str
    message_id: str
    at: float  # wall clock, seconds since the epoch
    mono: float  # time.monotonic() of the simulator's host
    resubmission: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SubmissionLog:
    def __init__(self, site: str, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity: must be at least 1")
        self.site = site
        self.capacity = capacity
        self.boot = uuid.uuid4().hex
        self._ring: list[Submission | None] = [None] * capacity  # seq s at s % capacity
        self._seq = 0
        self._oldest = 1  # the oldest seq still held (> _seq when none is)

    @property
    def last_seq(self) -> int:
        return self._seq

    def append(self, channel: str, reference: str, message_id: str,
               resubmission: bool) -> Submission:
        self._seq += 1
        entry = Submission(self._seq, self.site, channel, reference, message_id, time.time(),
                           time.monotonic(), resubmission)
        self._ring[self._seq % self.capacity] = entry
        self._oldest = max(self._oldest, self._seq - self.capacity + 1)
        return entry

    def clear(self) -> None:
        """Forget the entries (``reset``); sequence numbers keep growing."""
        self._ring = [None] * self.capacity
        self._oldest = self._seq + 1

    def page(self, after: int, limit: int = 1000) -> dict[str, Any]:
        """The entries with ``seq > after``, at most ``limit``; ``next`` is the cursor for the
        following page, ``lost`` how many wanted entries already left the ring."""
        if after < 0:
            raise ValueError("after: must be an integer >= 0")
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit: must be an integer from 1 to {MAX_PAGE}")
        oldest = self._oldest
        lost = max(0, min(oldest - 1, self._seq) - after)
        start = max(after + 1, oldest)
        items = [e for s in range(start, min(start + limit, self._seq + 1))
                 if (e := self._ring[s % self.capacity]) is not None]
        return {"site": self.site, "boot": self.boot, "capacity": self.capacity,
                "items": [s.as_dict() for s in items], "lost": lost,
                "next": items[-1].seq if items else max(after, start - 1),
                "last": self._seq}
