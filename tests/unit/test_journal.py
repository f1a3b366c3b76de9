"""The outcome journal on a temporary directory: an append returns only once fsync'd, appends
share fsyncs, what is not settled comes back at the next open (a torn last line dropped, a bad
line skipped), another node's journal is refused, compaction keeps only what is unsettled."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

import nodes.journal as journal_mod
from nodes.journal import FileJournal, JournalError, decode, encode
from replication.store_api import Outcome

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


def outcome(rid: int, *, final: bool = True, detail: str | None = None) -> Outcome:
    return Outcome(recipient_id=rid, channel="sms", carrier="smpp-paris",
                   reference=f"7:{rid}:sms:0.0", state="delivered" if final else "failed",
                   step=0, attempt=0, final=final, site="paris", carrier_message_id=f"m{rid}",
                   detail=detail, at=datetime(2026, 11, 30, 12, 0, rid % 60, tzinfo=UTC))


async def test_an_append_returns_only_once_its_line_is_fsynced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []  # the file's size at each fsync
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(os.fstat(fd).st_size)

    monkeypatch.setattr(journal_mod.os, "fsync", fsync)
    journal, replayed = FileJournal.open(tmp_path, "paris-node1")
    assert replayed == []
    before = len(synced)
    seq = await journal.append(3, 2, [outcome(1), outcome(2, final=False, detail="x")])
    size = (tmp_path / "paris-node1.journal").stat().st_size
    assert seq == 1 and len(synced) > before and synced[-1] == size
    assert journal.unsettled == 2
    await journal.close()


async def test_concurrent_appends_share_fsyncs_and_every_one_is_kept(tmp_path: Path) -> None:
    journal, _ = FileJournal.open(tmp_path, "paris-node1")
    start = journal.fsyncs
    seqs = await asyncio.gather(*(journal.append(b, 1, [outcome(b)]) for b in range(1, 41)))
    assert sorted(seqs) == list(range(1, 41))
    assert journal.fsyncs - start < 40  # group commit: one fsync covers appends made meanwhile
    await journal.close()
    _, replayed = FileJournal.open(tmp_path, "paris-node1")
    assert [g.batch_id for g in replayed] == list(range(1, 41))


async def test_what_is_not_settled_comes_back_at_the_next_open(tmp_path: Path) -> None:
    journal, _ = FileJournal.open(tmp_path, "paris-node1")
    a = await journal.append(3, 2, [outcome(1), outcome(2, final=False, detail="refusé")])
    b = await journal.append(4, 1, [outcome(5)])
    c = await journal.append(5, 1, [outcome(6)])
    journal.settle([b], "recorded")
    journal.settle([c], "refused")
    await journal.close()
    again, replayed = FileJournal.open(tmp_path, "paris-node1")
    assert [(g.seq, g.batch_id, g.epoch) for g in replayed] == [(a, 3, 2)]
    assert replayed[0].outcomes == (outcome(1), outcome(2, final=False, detail="refusé"))
    assert again.unsettled == 2
    # a new life numbers on after the old one: a settlement never names a group it did not mean
    assert await again.append(9, 1, [outcome(9)]) == c + 1
    await again.close()


async def test_a_torn_last_line_is_dropped_and_a_bad_line_skipped(tmp_path: Path) -> None:
    journal, _ = FileJournal.open(tmp_path, "paris-node1")
    await journal.append(1, 1, [outcome(1)])
    await journal.append(2, 1, [outcome(2)])
    await journal.append(3, 1, [outcome(3)])
    await journal.close()
    path = tmp_path / "paris-node1.journal"
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"b":2', b'"b":7')  # batch 2's group: checksum now wrong
    path.write_bytes(b"\n".join(lines) + encode({"g": 9, "b": 9, "e": 1, "o": []})[:20])
    _, replayed = FileJournal.open(tmp_path, "paris-node1")
    assert [g.batch_id for g in replayed] == [1, 3]


async def test_another_nodes_journal_is_refused(tmp_path: Path) -> None:
    journal, _ = FileJournal.open(tmp_path, "paris-node1")
    await journal.close()
    (tmp_path / "paris-node1.journal").rename(tmp_path / "paris-node2.journal")
    with pytest.raises(JournalError, match="journal of node 'paris-node1', not of 'paris-node2'"):
        FileJournal.open(tmp_path, "paris-node2")


async def test_an_unwritable_directory_is_refused_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(JournalError, match="not-a-dir"):
        FileJournal.open(blocker / "journal", "paris-node1")


async def test_compaction_keeps_only_what_is_unsettled(tmp_path: Path) -> None:
    journal, _ = FileJournal.open(tmp_path, "paris-node1", compact_bytes=2000)
    path = tmp_path / "paris-node1.journal"
    kept = await journal.append(1, 1, [outcome(1)])
    for b in range(2, 60):
        seq = await journal.append(b, 1, [outcome(b, detail="x" * 50)])
        journal.settle([seq], "recorded")
    await journal.append(99, 1, [outcome(99)])  # the write after the settlements compacts
    await journal.close()
    assert path.stat().st_size < 2000
    records = [decode(line + b"\n") for line in path.read_bytes().split(b"\n") if line]
    assert records[0]["kind"] == "tenir-outcome-journal" and records[0]["node"] == "paris-node1"
    _, replayed = FileJournal.open(tmp_path, "paris-node1")
    assert replayed[0].seq == kept and [g.batch_id for g in replayed] == [1, 99]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
