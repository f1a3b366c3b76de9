"""The evidence path on a real PostgreSQL: events recorded by the store and a drill record
written through the evidence service land in the database-chained ledger, a checkpoint is
signed and cosigned, and the exported bundle verifies offline with the pinned keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from failover.evidence import bundle as bundle_mod
from failover.evidence.pg_ledger import PgLedger
from failover.evidence.service import EvidenceService
from failover.evidence.verify import verify_bundle
from replication.store import PgCampaignStore
from tests.evidence_kit import ORIGIN, make_kit, synthetic_drill

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_events_and_a_drill_record_export_and_verify(store: PgCampaignStore,
                                                           tmp_path: Path) -> None:
    ledger = PgLedger(store.pool)
    kit = make_kit(ledger, tmp_path)
    assert await kit.checkpointer.announce_key() == 1  # after the ledger's opening entry
    assert await kit.checkpointer.announce_key() is None  # same key: nothing new
    await store.record_event("watchdog.move", "moved 3 batches of paris-node1",
                             "marseille-node1", "marseille", details={"moved": {"p": 3}})
    svc = EvidenceService(ledger, ORIGIN, "paris-node1", "paris", kit.paris, kit.vkeys)
    seq = await svc.record(synthetic_drill(), "operator:abc123")
    first = await kit.checkpointer.once()
    assert first is not None and first.size == seq + 1
    assert await kit.checkpointer.once() is None  # nothing new
    await store.record_event("operator.switchover", "switched to marseille", "paris-node1",
                             "paris", actor="operator:abc123")
    second = await kit.checkpointer.once()
    assert second is not None and second.size == seq + 2
    b = await svc.bundle(None, None)
    bundle_mod.write(b, tmp_path / "bundle")
    result = verify_bundle(bundle_mod.read(tmp_path / "bundle"), trusted=kit.vkeys)
    assert result.ok, result.problems
    assert result.records[seq].record["measured"]["rto_s"] == 21.4
    assert [cp.size for cp, _ in result.checkpoints] == [seq + 1, seq + 2]
    assert b"RTO measured 21.4 s" in await svc.report(None, None, "html")
