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
reader knows its history is incomplete. ``boot`` is a random id of this log: a reader that
sees it change knows the log started again (sequence numbers from 1) and what it had not read
is lost.

The journal (``journal=PATH``, ``--journal``). A real carrier does not forget what it delivered
when its machine loses power, and a chaos run must count what the lost site's carrier received
up to the cut. With a journal, every entry is also appended to a file (one JSON line, one
``write`` system call: a killed process loses nothing the kernel has), and a simulator started
again on the same file carries on: same ``boot``, sequence numbers continuing, the ring and the
per-reference counts rebuilt from the entries it replays. The file holds a header line, entries
and ``{"clear": seq}`` lines (``reset``); it is rewritten with only what the ring holds when it
reaches twice the capacity. A torn last line is skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
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


JOURNAL_KIND: Final = "tenir-carrier-submissions"


class JournalError(ValueError):
    """A journal that belongs to another site or is not a submission journal."""


class SubmissionLog:
    def __init__(self, site: str, capacity: int = DEFAULT_CAPACITY,
                 journal: str | Path | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity: must be at least 1")
        self.site = site
        self.capacity = capacity
        self.boot = uuid.uuid4().hex
        self._ring: list[Submission | None] = [None] * capacity  # seq s at s % capacity
        self._seq = 0
        self._oldest = 1  # the oldest seq still held (> _seq when none is)
        self.journal = Path(journal) if journal is not None else None
        self._fd: int | None = None
        self._lines = 0  # lines in the journal
        self.replayed = 0  # entries read back from the journal at start
        if self.journal is not None:
            self._open_journal(self.journal)

    @property
    def last_seq(self) -> int:
        return self._seq

    def _place(self, entry: Submission) -> None:
        self._seq = max(self._seq, entry.seq)
        self._ring[entry.seq % self.capacity] = entry
        self._oldest = max(self._oldest, self._seq - self.capacity + 1)

    def _cleared(self, seq: int) -> None:
        self._seq = max(self._seq, seq)
        self._ring = [None] * self.capacity
        self._oldest = seq + 1

    def append(self, channel: str, reference: str, message_id: str,
               resubmission: bool) -> Submission:
        entry = Submission(self._seq + 1, self.site, channel, reference, message_id, time.time(),
                           time.monotonic(), resubmission)
        self._place(entry)
        self._write(entry.as_dict())
        return entry

    def clear(self) -> None:
        """Forget the entries (``reset``); sequence numbers keep growing."""
        self._cleared(self._seq)
        self._write({"clear": self._seq})

    def entries(self) -> Iterator[Submission]:
        """What the ring holds, oldest first."""
        for s in range(max(1, self._oldest), self._seq + 1):
            entry = self._ring[s % self.capacity]
            if entry is not None and entry.seq == s:
                yield entry

    # --- the journal ---------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        return {"journal": JOURNAL_KIND, "site": self.site, "boot": self.boot}

    def _open_journal(self, path: Path) -> None:
        if path.exists() and path.stat().st_size > 0:
            self._replay(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self._header()) + "\n", encoding="utf-8")
            self._lines = 1
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def _replay(self, path: Path) -> None:
        with open(path, encoding="utf-8") as src:
            lines = src.read().splitlines()
        try:
            header = json.loads(lines[0])
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("journal") != JOURNAL_KIND:
            raise JournalError(f"{path}: not a submission journal (first line)")
        if header.get("site") != self.site:
            raise JournalError(f"{path}: the journal of site {header.get('site')!r}, "
                               f"not {self.site!r}")
        self.boot = str(header["boot"])
        for line in lines[1:]:
            try:
                item = json.loads(line)
                if "clear" in item:
                    self._cleared(int(item["clear"]))
                else:
                    self._place(Submission(**item))
                    self.replayed += 1
            except (ValueError, TypeError):  # a line torn by a kill: skipped
                continue
        self._lines = len(lines)

    def _write(self, item: dict[str, Any]) -> None:
        if self._fd is None:
            return
        os.write(self._fd, (json.dumps(item) + "\n").encode())
        self._lines += 1
        if self._lines > 2 * self.capacity + 2:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the journal with what the ring holds (the rest is lost to readers anyway)."""
        assert self.journal is not None and self._fd is not None
        tmp = self.journal.with_name(self.journal.name + ".tmp")
        items = [self._header(), {"clear": self._oldest - 1},
                 *(e.as_dict() for e in self.entries())]
        tmp.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
        os.replace(tmp, self.journal)
        os.close(self._fd)
        self._fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND)
        self._lines = len(items)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

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
