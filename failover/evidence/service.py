"""What a node serves about its evidence (the API's ``/evidence`` routes): the ledger read
back, proofs, bundles and reports, and records signed with the site key."""

from __future__ import annotations

import asyncio
import threading
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


class ProofRequestError(ValueError):
    """A proof asked about entries or sizes the ledger does not have; names the argument."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


@dataclass
class EvidenceService:
    ledger: Ledger
    origin: str
    node: str
    site: str
    signer: Signer | None = None
    keys: list[str] = field(default_factory=list)  # verifier keys a bundle carries
    # One report rendered at a time, off the event loop (a PDF of many drills takes seconds).
    _rendering: threading.Lock = field(default_factory=threading.Lock, repr=False,
                                       compare=False)

    async def bundle(self, since: datetime | None, until: datetime | None) -> Bundle:
        return await collect(self.ledger, origin=self.origin, keys=self.keys, since=since,
                             until=until)

    async def report(self, since: datetime | None, until: datetime | None,
                     fmt: str) -> bytes:
        """Built from the bundle verified with the node's own keys (a reader verifies the
        bundle with keys they pinned: ``tenir evidence verify --trust``)."""
        b = await self.bundle(since, until)
        return await asyncio.to_thread(self._render, b, fmt)

    def _render(self, b: Bundle, fmt: str) -> bytes:
        with self._rendering:
            return render(build(b, verify_bundle(b, trusted=self.keys or None)), fmt)

    async def record(self, record: Any, actor: str) -> int:
        if self.signer is None:
            raise NoSiteKey("this node has no site key (evidence.site_key): it cannot sign")
        return await append_record(self.ledger, record, self.signer, actor=actor,
                                   node=self.node, site=self.site)

    async def inclusion(self, seq: int, size: int) -> list[bytes]:
        """The proof that entry ``seq`` is in the tree of the first ``size`` entries."""
        if seq >= size:
            raise ProofRequestError("seq", f"must be less than size ({size})")
        return merkle.inclusion_proof(seq, await self._leaves("size", size))

    async def consistency(self, old: int, new: int) -> list[bytes]:
        """The proof that the tree of ``old`` entries is a prefix of the tree of ``new``."""
        if old > new:
            raise ProofRequestError("old", f"must be at most new ({new})")
        return merkle.consistency_proof(old, await self._leaves("new", new))

    async def _leaves(self, name: str, size: int) -> list[bytes]:
        """The first ``size`` leaf hashes, all of them there (a tree the ledger has reached:
        a proof for a larger one would be for another tree than asked)."""
        have = await self.ledger.size()
        if size > have:
            raise ProofRequestError(name, f"the ledger has {have} entries, fewer than {size}")
        return await self.ledger.leaf_hashes(0, size)
