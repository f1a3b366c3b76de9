"""The outcome journal: every outcome a node records goes first to a local file, fsync'd, then
to PostgreSQL. While PostgreSQL fails over, a surviving node goes on sending and its outcomes wait
here; a node that dies before they reach PostgreSQL flushes them when it starts again (same node
name: its service manager restarts it), through the same fencing as any write.

File: ``<journal_dir>/<node>.journal``, append-only, mode 0600, one line per record, each line
``<crc32 hex> <json>``:

* a header ``{"kind": "tenir-outcome-journal", "version": 1, "node": ...}`` (a journal of
  another node, or of another kind or version, is refused at open);
* a group ``{"g": seq, "b": batch, "e": epoch, "o": [outcome, ...]}``: the outcomes of one
  flush of one batch under its claim (batch, epoch) by this node;
* a settlement ``{"s": [seq, ...], "v": "recorded" | "refused" | "invalid"}``: those groups
  reached PostgreSQL (recorded), were refused by fencing (the batch moved on: its messages are
  sent again by its new owner, a duplicate, counted), or were refused as invalid (logged).

Durability. ``append`` returns once its group is written and fsync'd (group commit: appends made
while an fsync runs go together in the next one; the writing and fsync run in a thread). A
settlement is written with the next commit and not awaited: were it lost with the machine, the
group is flushed again at the next start, which PostgreSQL treats as the same write (an
outcome's reference is its key, a recipient's first final outcome wins) or refuses as stale.

Replay. ``FileJournal.open`` reads the file: groups without a settlement are returned (the
caller flushes them, ``nodes/journal_flush.py``). A last line cut short (a crash mid-write,
never acknowledged) is dropped; a bad line elsewhere is reported and skipped (its outcomes'
messages are sent again by whoever takes their batch: a batch is finished in PostgreSQL only
once its outcomes are recorded there, so the journal never holds the only copy of finished
work). The file is then rewritten with only the unsettled groups, and again whenever it grows
past ``compact_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from replication.store_api import Outcome

log = logging.getLogger("tenir.journal")
KIND: Final = "tenir-outcome-journal"
VERSION: Final = 1
Verdict = Literal["recorded", "refused", "invalid"]
VERDICTS: Final = ("recorded", "refused", "invalid")
COMPACT_BYTES: Final = 8 * 1024 * 1024


class JournalError(Exception):
    """The journal cannot be used: names the file and the problem."""


class OutcomeJournal(Protocol):
    """What the outcome buffer needs of a journal."""

    async def append(self, batch_id: int, epoch: int, outcomes: Sequence[Outcome]) -> int:
        """Write and fsync one group; its sequence number."""

    def settle(self, seqs: Sequence[int], verdict: Verdict) -> None:
        """Say that these groups are done with (written with the next commit)."""

    @property
    def unsettled(self) -> int:
        """Outcomes appended and not settled yet."""


@dataclass(frozen=True)
class JournalGroup:
    seq: int
    batch_id: int
    epoch: int
    outcomes: tuple[Outcome, ...]


def outcome_to_json(o: Outcome) -> dict[str, Any]:
    return {"r": o.recipient_id, "ch": o.channel, "ca": o.carrier, "ref": o.reference,
            "st": o.state, "sp": o.step, "at": o.attempt, "f": o.final, "si": o.site,
            "m": o.carrier_message_id, "d": o.detail,
            "t": o.at.isoformat() if o.at is not None else None}


def outcome_from_json(d: dict[str, Any]) -> Outcome:
    return Outcome(recipient_id=int(d["r"]), channel=d["ch"], carrier=str(d["ca"]),
                   reference=str(d["ref"]), state=d["st"], step=int(d["sp"]),
                   attempt=int(d["at"]), final=bool(d["f"]), site=str(d["si"]),
                   carrier_message_id=d.get("m"), detail=d.get("d"),
                   at=datetime.fromisoformat(d["t"]) if d.get("t") else None)


def encode(record: dict[str, Any]) -> bytes:
    body = json.dumps(record, separators=(",", ":"), ensure_ascii=True)
    return f"{zlib.crc32(body.encode()):08x} {body}\n".encode()


def decode(line: bytes) -> dict[str, Any]:
    """One line's record; ValueError when its checksum or JSON is wrong."""
    text = line.decode("ascii").rstrip("\n")
    crc, _, body = text.partition(" ")
    if len(crc) != 8 or int(crc, 16) != zlib.crc32(body.encode()):
        raise ValueError("checksum mismatch")
    record = json.loads(body)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


@dataclass
class Replay:
    groups: dict[int, JournalGroup]
    lines: dict[int, bytes]  # the unsettled groups' lines, to rewrite them
    next_seq: int
    bad_lines: int
    torn_tail: bool


def read_journal(path: Path, node: str) -> Replay:
    """Parse ``path`` (see the module docstring); JournalError for another node's journal."""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, else a torn last line
    groups: dict[int, JournalGroup] = {}
    kept: dict[int, bytes] = {}
    next_seq, bad = 1, 0
    for number, line in enumerate(lines, start=1):
        try:
            record = decode(line + b"\n")
        except (ValueError, UnicodeDecodeError):
            bad += 1
            log.error("outcome journal %s: line %d unreadable, skipped (its messages are sent "
                      "again by whoever takes their batch)", path, number)
            continue
        if number == 1 or "kind" in record:
            _check_header(path, record, node)
        elif "g" in record:
            seq = int(record["g"])
            groups[seq] = JournalGroup(seq, int(record["b"]), int(record["e"]),
                                       tuple(outcome_from_json(o) for o in record["o"]))
            kept[seq] = line + b"\n"
            next_seq = max(next_seq, seq + 1)
        elif "s" in record:
            for seq in record["s"]:
                groups.pop(int(seq), None)
                kept.pop(int(seq), None)
    return Replay(groups, kept, next_seq, bad, bool(tail))


def _check_header(path: Path, record: dict[str, Any], node: str) -> None:
    if record.get("kind") != KIND or record.get("version") != VERSION:
        raise JournalError(f"{path}: not a tenir outcome journal of version {VERSION} "
                           f"(kind {record.get('kind')!r}, version {record.get('version')!r})")
    if record.get("node") != node:
        raise JournalError(f"{path}: the journal of node {record.get('node')!r}, not of "
                           f"{node!r}: each node has its own")


class FileJournal:
    """The journal on disk. ``open`` is synchronous (at start, before the node serves)."""

    def __init__(self, path: Path, node: str, replay: Replay, compact_bytes: int) -> None:
        self.path = path
        self.node = node
        self.compact_bytes = compact_bytes
        self._next = replay.next_seq
        self._unsettled: dict[int, bytes] = dict(replay.lines)
        self._counts: dict[int, int] = {s: len(g.outcomes) for s, g in replay.groups.items()}
        # (group seq or None for a settlement, its line, who waits for it)
        self._queue: list[tuple[int | None, bytes, asyncio.Future[None] | None]] = []
        self._writer: asyncio.Task[None] | None = None
        self._fd = -1
        self._size = 0
        self.fsyncs = 0
        self.replayed = len(replay.groups)

    @classmethod
    def open(cls, directory: str | Path, node: str, *,
             compact_bytes: int = COMPACT_BYTES) -> tuple[FileJournal, list[JournalGroup]]:
        """Open (or create) ``node``'s journal in ``directory``; returns it and the groups
        left unsettled by a previous life, oldest first."""
        folder = Path(directory)
        path = folder / f"{node}.journal"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            replay = (read_journal(path, node) if path.exists()
                      else Replay({}, {}, 1, 0, False))
        except OSError as exc:
            raise JournalError(f"{path}: cannot read or create: {exc.strerror or exc}") from exc
        if replay.torn_tail:
            log.warning("outcome journal %s: last line cut short (a crash while writing it, "
                        "never acknowledged): dropped", path)
        journal = cls(path, node, replay, compact_bytes)
        journal._rewrite()
        return journal, [replay.groups[s] for s in sorted(replay.groups)]

    @property
    def unsettled(self) -> int:
        """Outcomes written here and not yet settled."""
        return sum(self._counts.values())

    async def append(self, batch_id: int, epoch: int, outcomes: Sequence[Outcome]) -> int:
        seq = self._next
        self._next += 1
        line = encode({"g": seq, "b": batch_id, "e": epoch,
                       "o": [outcome_to_json(o) for o in outcomes]})
        self._unsettled[seq] = line
        self._counts[seq] = len(outcomes)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((seq, line, done))
        self._kick()
        await asyncio.shield(done)
        return seq

    def settle(self, seqs: Sequence[int], verdict: Verdict) -> None:
        if verdict not in VERDICTS:
            raise ValueError(f"verdict: one of {', '.join(VERDICTS)}")
        known = [s for s in seqs if s in self._unsettled]
        if not known:
            return
        for s in known:
            self._unsettled.pop(s, None)
            self._counts.pop(s, None)
        self._queue.append((None, encode({"s": known, "v": verdict}), None))
        self._kick()

    async def close(self) -> None:
        """Write what is queued, then close the file."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # --- the writer: one task, the file's only writer -----------------------------------------
    def _kick(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_queued(),
                                                                  name="outcome-journal")

    async def _write_queued(self) -> None:
        while self._queue:
            items, self._queue = self._queue, []
            data = b"".join(line for _, line, _ in items)
            try:
                await asyncio.to_thread(self._write_sync, data)
            except OSError as exc:
                error = JournalError(f"{self.path}: write failed: {exc.strerror or exc}")
                for seq, _, fut in items:
                    if seq is not None:  # not journaled: its caller keeps it in memory
                        self._unsettled.pop(seq, None)
                        self._counts.pop(seq, None)
                    if fut is not None and not fut.done():
                        fut.set_exception(error)
                continue
            for _, _, fut in items:
                if fut is not None and not fut.done():
                    fut.set_result(None)
            if self._size > self.compact_bytes:
                try:
                    await asyncio.to_thread(self._rewrite)
                except JournalError as exc:  # appends go on to the file as it is
                    log.error("outcome journal not compacted: %s", exc)

    def _write_sync(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        self._size += len(data)
        self.fsyncs += 1

    def _rewrite(self) -> None:
        """Replace the file by its header and the unsettled groups (write and fsync a new file,
        rename it over the old one, fsync the directory); appends then go to the new one. On
        failure the old file and descriptor stay as they were."""
        header = encode({"kind": KIND, "version": VERSION, "node": self.node})
        data = header + b"".join(self._unsettled[s] for s in sorted(self._unsettled))
        tmp = self.path.with_name(self.path.name + ".new")
        fd = -1
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            os.replace(tmp, self.path)  # fd now is the journal's
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            raise JournalError(f"{self.path}: cannot write: {exc.strerror or exc}") from exc
        old, self._fd, self._size = self._fd, fd, len(data)
        if old >= 0:
            os.close(old)
        try:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            log.warning("outcome journal %s: directory not synced: %s", self.path, exc)

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            if self._fd >= 0:
                os.close(self._fd)
