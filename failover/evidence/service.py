"""What a node serves about its evidence (the API's ``/evidence`` routes): the ledger read
back, proofs, bundles and reports, and records signed with the site key."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from failover.evidence import merkle
from failover.evidence.bundle import Bundle, collect
from failover.evidence.keys import Signer
from failover.evidence.ledger import Ledger
from failover.evidence.records import append_record
from failover.evidence.render import render
from failover.evidence.report import build
from failover.evidence.verify import verify_bundle


class NoSiteKey(RuntimeError):
    pass


@dataclass
class EvidenceService:
    ledger: Ledger
    origin: str
    node: str
    site: str
    signer: Signer | None = None
    keys: list[str] = field(default_factory=list)  # verifier keys a bundle carries

    async def bundle(self, since: datetime | None, until: datetime | None) -> Bundle:
        return await collect(self.ledger, origin=self.origin, keys=self.keys, since=since,
                             until=until)

    async def report(self, since: datetime | None, until: datetime | None,
                     fmt: str) -> bytes:
        """Built from the bundle verified with the node's own keys (a reader verifies the
        bundle with keys they pinned: ``tenir evidence verify --trust``)."""
        b = await self.bundle(since, until)
        return render(build(b, verify_bundle(b, trusted=self.keys or None)), fmt)

    async def record(self, record: Any, actor: str) -> int:
        if self.signer is None:
            raise NoSiteKey("this node has no site key (evidence.site_key): it cannot sign")
        return await append_record(self.ledger, record, self.signer, actor=actor,
                                   node=self.node, site=self.site)

    async def inclusion(self, seq: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(seq, await self.ledger.leaf_hashes(0, size))

    async def consistency(self, old: int, new: int) -> list[bytes]:
        leaves = await self.ledger.leaf_hashes(0, new)
        if len(leaves) < new:
            raise merkle.ProofError(f"the ledger has {len(leaves)} entries, not {new}")
        return merkle.consistency_proof(old, leaves)
