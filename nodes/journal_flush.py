"""A restarted node's first act: flush what its previous life journaled and never recorded.

Runs after the store opens and before the node waits for its previous life's batches to be
moved (``nodes/membership.py``), out of the membership. Each (batch, epoch) of the journal is
written as one fenced ``record_outcomes`` under this node's name, and PostgreSQL decides:

* the batch is still held under that claim (the watchdog has not moved it yet): the outcomes
  are recorded, their recipients are not sent again by whoever takes the batch next;
* the batch was moved (and perhaps claimed again, or finished) meanwhile: the write is refused
  and counted like any stale write (``fencing_rejections``); the new owner sends those
  recipients' messages again with the same references: a duplicate, counted by the carriers'
  logs, never a second record;
* an outcome refused as invalid (or a batch that no longer exists) is logged and dropped.

The move and the flush lock the same batch row, so one of them comes first and the other sees
it. A group recorded by the previous life whose settlement was lost is written again: the same
references, so the same rows (or a refusal). While the store is away, it retries until
``deadline_s``, then raises (the process exits; its service manager starts it again, the
journal intact).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from nodes.journal import JournalGroup, OutcomeJournal
from replication.store_api import CampaignStore, InvalidInput, NotFound, StaleEpoch

log = logging.getLogger("tenir.journal")


@dataclass
class FlushReport:
    recorded: int = 0  # outcomes
    refused: int = 0  # outcomes refused by fencing (their messages are resent)
    invalid: int = 0  # outcomes refused as invalid, dropped
    batches: int = 0
    refused_writes: int = 0  # fenced writes refused (one per batch claim)

    def sentence(self) -> str:
        return (f"{self.recorded} journaled outcomes recorded, {self.refused} refused by "
                f"fencing (their batches had moved: resent by the new owner), {self.invalid} "
                f"invalid, over {self.batches} batches")


async def flush_journal(store: CampaignStore, journal: OutcomeJournal,
                        groups: Sequence[JournalGroup], node: str, site: str, *,
                        deadline_s: float = 120.0, pause_s: float = 0.5) -> FlushReport:
    report = FlushReport()
    by_claim: dict[tuple[int, int], list[JournalGroup]] = {}
    for g in groups:
        by_claim.setdefault((g.batch_id, g.epoch), []).append(g)
    extra = {"node": node, "site": site}
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline_s
    for (batch, epoch), parts in by_claim.items():
        outcomes = [o for g in parts for o in g.outcomes]
        seqs = [g.seq for g in parts]
        report.batches += 1
        while True:
            try:
                await store.record_outcomes(batch, epoch, node, outcomes)
                journal.settle(seqs, "recorded")
                report.recorded += len(outcomes)
            except StaleEpoch:
                journal.settle(seqs, "refused")
                report.refused += len(outcomes)
                report.refused_writes += 1
            except (InvalidInput, NotFound) as exc:
                journal.settle(seqs, "invalid")
                report.invalid += len(outcomes)
                log.error("journaled outcomes of batch %d refused as invalid, dropped: %s",
                          batch, exc, extra=extra)
            except Exception as exc:  # the store is away: wait for it
                if loop.time() >= until:
                    raise
                log.warning("journal flush waits for the store: %s", exc, extra=extra)
                await asyncio.sleep(pause_s)
                continue
            break
    if groups:
        log.warning("previous life's journal flushed: %s", report.sentence(), extra=extra)
    return report
