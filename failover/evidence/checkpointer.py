"""Who writes checkpoints: a periodic task of every alert node that has a site key. Every
``interval_s``, if the ledger grew past the latest stored checkpoint, it signs a checkpoint of
the current size with its site's key, has the witness cosign it (with a consistency proof from
the size the witness last cosigned) and stores the cosigned note. Nodes racing for the same
size are serialised by the witness (409: the loser retries from the witness's size, or finds
the checkpoint stored) and by the table's primary key.

At start it announces its key in the ledger (``evidence.key``) if the ledger does not already
name it for its site: the first key of a site, and every rotation (``previous`` names the key
it replaces), are entries of the log itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from failover.evidence import merkle, note
from failover.evidence.keys import Signer, Verifier
from failover.evidence.ledger import Ledger, StoredCheckpoint
from failover.evidence.witness_client import Cosigner, WitnessConflict, WitnessError

log = logging.getLogger("tenir.evidence")


class Checkpointer:
    def __init__(self, ledger: Ledger, signer: Signer, *, origin: str, node: str, site: str,
                 witness: Cosigner, witness_key: Verifier, interval_s: float = 10.0) -> None:
        self.ledger, self.signer, self.origin = ledger, signer, origin
        self.node, self.site = node, site
        self.witness, self.witness_key, self.interval_s = witness, witness_key, interval_s
        self._leaves: list[bytes] = []

    async def announce_key(self) -> int | None:
        """Append ``evidence.key`` unless the ledger's latest one for this site is this key."""
        vkey = self.signer.verifier.vkey
        last = await self.ledger.last_of_kind("evidence.key", site=self.site)
        previous = last.doc().get("details", {}).get("vkey") if last else None
        if previous == vkey:
            return None
        sentence = (f"site {self.site} signs checkpoints and records with key "
                    f"{self.signer.name}+{self.signer.key_id.hex()}"
                    + (f" (rotated: replaces {previous.split('+')[0]}+"
                       f"{previous.split('+')[1]})" if previous else " (first key)"))
        return await self.ledger.append(
            "evidence.key", sentence, actor=f"node:{self.node}", node=self.node, site=self.site,
            details={"site": self.site, "vkey": vkey, "previous": previous,
                     "witness_vkey": self.witness_key.vkey})

    async def _leaves_upto(self, size: int) -> list[bytes]:
        if len(self._leaves) < size:
            self._leaves += await self.ledger.leaf_hashes(len(self._leaves), size)
        return self._leaves[:size]

    async def once(self) -> StoredCheckpoint | None:
        """One round: the new cosigned checkpoint stored, or None when nothing was new."""
        size = await self.ledger.size()
        stored = await self.ledger.checkpoints()
        last = stored[-1] if stored else None
        if size == 0 or (last is not None and last.size >= size):
            return None
        leaves = await self._leaves_upto(size)
        root = merkle.root(leaves)
        text = note.Checkpoint(self.origin, size, root).text()
        signed = note.Note(text, (note.sign(text, self.signer),))
        old = last.size if last is not None else 0
        for _ in range(2):
            try:
                lines = await self.witness.add_checkpoint(
                    old, merkle.consistency_proof(old, leaves), signed.render())
                break
            except WitnessConflict as exc:
                if exc.known_size > size:
                    return None  # another node already had a larger one cosigned
                old = exc.known_size
        else:
            raise WitnessError(409, "the witness's size kept changing")
        cosigned = signed.with_signatures(lines)
        note.verify(note.parse_note(cosigned.render()), [self.signer.verifier, self.witness_key])
        checkpoint = StoredCheckpoint(size, root, cosigned.render())
        await self.ledger.add_checkpoint(size, root, checkpoint.note)
        return checkpoint

    async def run(self, stop: asyncio.Event) -> None:
        """Announce the key, then a round every ``interval_s`` until ``stop``; errors are logged
        and retried at the next round (the witness or the database may be away)."""
        announced = False
        while not stop.is_set():
            try:
                if not announced:
                    await asyncio.shield(self.announce_key())
                    announced = True
                made = await asyncio.shield(self.once())
                if made is not None:
                    log.info("checkpoint of size %d cosigned by the witness", made.size,
                             extra={"node": self.node, "site": self.site})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("checkpoint round failed: %s: %s", type(exc).__name__, exc,
                            extra={"node": self.node, "site": self.site})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
