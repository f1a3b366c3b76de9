"""Offline verification of an evidence bundle (``tenir evidence verify``): no cluster, no
database. What it checks, in order, each failure naming the entry or checkpoint at fault:

1. the entries: numbered 0..size-1 in order (a missing or displaced entry is named); every whole
   entry's hash recomputed from its bytes; every entry's ``prev`` equal to the hash before it;
2. the checkpoints: a valid note signature by a trusted site key (type 0x01) announced in the
   ledger (``evidence.key``) before the checkpoint, and a valid cosignature by a trusted
   witness key (type 0x04); the root recomputed from the entries' hashes; the consistency
   proof between each checkpoint and the next;
3. the records: each drill or incident record's DSSE envelope signed by a trusted site key, its
   in-toto Statement and subject digest, the copy in ``records/`` identical;
4. with an earlier bundle: its latest checkpoint (verified with the same keys) is a prefix of
   this ledger; otherwise the first entry that differs is named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from failover.evidence import merkle, note
from failover.evidence.bundle import RECORD_KINDS, Bundle, b64list, entry_from_json
from failover.evidence.entry import GENESIS_PREV, Entry
from failover.evidence.keys import COSIGNATURE_V1, ED25519, KeyFileError, Verifier, parse_verifier
from failover.evidence.records import RecordError, VerifiedRecord, verify_envelope


@dataclass(frozen=True)
class Problem:
    where: str  # "entry 12", "checkpoint of size 40", "records/00000012.dsse.json", ...
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Result:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    size: int = 0
    hashes: list[bytes] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)  # the whole ones, in order
    checkpoints: list[tuple[note.Checkpoint, note.Verified]] = field(default_factory=list)
    records: dict[int, VerifiedRecord] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, where: str, what: str) -> None:
        self.problems.append(Problem(where, what))


def _keys(vkeys: list[str], result: Result) -> list[Verifier]:
    out = []
    for k in vkeys:
        try:
            out.append(parse_verifier(k))
        except KeyFileError as exc:
            result.fail("keys", str(exc))
    return out


def _check_entries(bundle: Bundle, result: Result) -> None:
    lines = bundle.entries
    present = {line.get("seq") for line in lines}
    prev_hash = GENESIS_PREV
    for i, line in enumerate(lines):
        seq = line.get("seq")
        if seq != i:
            if isinstance(seq, int) and seq > i and i not in present:
                result.fail(f"entry {i}", f"is missing: the bundle goes from entry {i - 1} to "
                            f"entry {seq} (deleted)")
            else:
                result.fail(f"entry {i}", f"out of place: entry {seq} stands where entry {i} "
                            "should (entries reordered)")
            return
        try:
            stored = bytes.fromhex(str(line["hash"]))
            entry = entry_from_json(line)
        except (KeyError, ValueError, TypeError) as exc:
            result.fail(f"entry {i}", f"malformed ({exc})")
            return
        if entry is not None:
            if entry.prev != prev_hash:
                result.fail(f"entry {i}", "its previous-hash does not match the hash of entry "
                            f"{i - 1} (the chain is broken here)")
                return
            if entry.computed_hash != stored:
                result.fail(f"entry {i}", "its content does not match its hash (changed after "
                            "it was written)")
                return
            try:
                entry.doc()
            except ValueError as exc:
                result.fail(f"entry {i}", f"payload is not a JSON object ({exc})")
                return
            result.entries.append(entry)
        result.hashes.append(stored)
        prev_hash = stored
    declared = bundle.manifest.get("size")
    if declared != len(lines):
        result.fail("bundle.json", f"declares {declared} entries, entries.jsonl has {len(lines)}")
    result.size = len(lines)


def _announced(result: Result) -> dict[str, int]:
    """vkey -> first seq announcing it (entries of kind evidence.key)."""
    out: dict[str, int] = {}
    for e in result.entries:
        doc = e.doc()
        if doc.get("kind") == "evidence.key":
            vkey = str(doc.get("details", {}).get("vkey", ""))
            out.setdefault(vkey, e.seq)
    return out


def _check_checkpoints(bundle: Bundle, keys: list[Verifier], result: Result) -> None:
    origin = bundle.manifest.get("origin")
    announced = _announced(result)
    last_size = -1
    for n, text in enumerate(bundle.checkpoints):
        try:
            parsed = note.parse_note(text)
            cp = note.parse_checkpoint(parsed.text)
        except note.NoteError as exc:
            result.fail(f"checkpoint {n + 1}", f"malformed ({exc})")
            continue
        where = f"checkpoint of size {cp.size} (entries 0..{cp.size - 1})"
        if cp.origin != origin:
            result.fail(where, f"origin {cp.origin!r} is not the bundle's {origin!r}")
            continue
        if cp.size <= last_size:
            result.fail(where, f"does not grow (after a checkpoint of size {last_size})")
        try:
            verified = note.verify(parsed, keys)
        except note.NoteError as exc:
            result.fail(where, f"signature: {exc}")
            continue
        sites = [v for v in verified.signers if v.key_type == ED25519]
        witnesses = [v for v in verified.signers if v.key_type == COSIGNATURE_V1]
        if not sites:
            result.fail(where, "is not signed by a trusted site key")
        if not witnesses:
            result.fail(where, "lacks a valid cosignature of a trusted witness")
        for v in sites:
            seq = announced.get(v.vkey)
            if seq is None or seq >= cp.size:
                result.fail(where, f"signed by {v.name} ({v.key_id.hex()}), a key the ledger "
                            "did not announce before it (evidence.key)")
        if cp.size > result.size:
            result.fail(where, f"covers {cp.size} entries, the bundle has {result.size}")
        elif merkle.root(result.hashes[:cp.size]) != cp.root:
            result.fail(where, "its root is not the root of the entries' tree: an entry before "
                        f"{cp.size} was changed and its hash recomputed")
        result.checkpoints.append((cp, verified))
        last_size = cp.size
    for item in bundle.manifest.get("proofs", {}).get("consistency", []):
        roots = {cp.size: cp.root for cp, _ in result.checkpoints}
        a, b = item.get("from"), item.get("to")
        if a in roots and b in roots:
            try:
                merkle.verify_consistency(a, b, roots[a], roots[b], b64list(item.get("proof")))
            except (merkle.ProofError, ValueError) as exc:
                result.fail(f"consistency proof {a} -> {b}", str(exc))
    if result.checkpoints:
        top = result.checkpoints[-1][0].size
        if top < result.size:
            result.warnings.append(f"entries {top}..{result.size - 1} are not yet under a "
                                   "signed checkpoint")
    elif result.size:
        result.fail("checkpoints", "the bundle has no signed checkpoint")


def _check_records(bundle: Bundle, keys: list[Verifier], result: Result) -> None:
    site_keys = [k for k in keys if k.key_type == ED25519]
    for e in result.entries:
        doc = e.doc()
        if doc.get("kind") not in RECORD_KINDS:
            continue
        envelope = doc.get("details", {}).get("envelope")
        try:
            result.records[e.seq] = verify_envelope(envelope, site_keys)
        except RecordError as exc:
            result.fail(f"entry {e.seq}", f"record: {exc}")
            continue
        copy = bundle.records.get(str(e.seq))
        if copy is not None and json.dumps(copy, sort_keys=True) != json.dumps(envelope,
                                                                               sort_keys=True):
            result.fail(f"records/{e.seq:08d}.dsse.json", f"differs from what entry {e.seq} "
                        "carries")
    for item in bundle.manifest.get("proofs", {}).get("inclusion", []):
        roots = {cp.size: cp.root for cp, _ in result.checkpoints}
        seq, size = item.get("seq"), item.get("size")
        if isinstance(seq, int) and size in roots and 0 <= seq < len(result.hashes):
            try:
                merkle.verify_inclusion(seq, size, result.hashes[seq], b64list(item["proof"]),
                                        roots[size])
            except (merkle.ProofError, ValueError, KeyError) as exc:
                result.fail(f"entry {seq}", f"inclusion proof: {exc}")


def _check_earlier(earlier: Bundle, keys: list[Verifier], result: Result) -> None:
    before = verify_bundle(earlier, trusted=keys)
    if not before.checkpoints:
        result.fail("earlier bundle", "has no verified checkpoint to compare with"
                    + (f" ({before.problems[0]})" if before.problems else ""))
        return
    cp, _ = before.checkpoints[-1]
    where = f"earlier checkpoint of size {cp.size}"
    first = next((i for i, (a, b) in enumerate(zip(before.hashes, result.hashes, strict=False))
                  if a != b), None)
    if cp.size > result.size:
        result.fail(where, f"this bundle has only {result.size} entries: entries were removed"
                    + (f"; entry {first} differs" if first is not None else ""))
    elif merkle.root(result.hashes[:cp.size]) != cp.root:
        named = (f"entry {first} differs from the earlier bundle's" if first is not None
                 else "an entry before it differs")
        result.fail(where, f"this bundle contradicts it (two histories): {named}")


def verify_bundle(bundle: Bundle, *, trusted: list[str] | list[Verifier] | None = None,
                  earlier: Bundle | None = None) -> Result:
    result = Result()
    if trusted is None:
        keys = _keys(bundle.keys, result)
        result.warnings.append("keys taken from the bundle itself: pin them with --trust")
    else:
        keys = [k for k in trusted if isinstance(k, Verifier)] + _keys(
            [k for k in trusted if isinstance(k, str)], result)
    _check_entries(bundle, result)
    if result.problems:
        return result
    _check_checkpoints(bundle, keys, result)
    _check_records(bundle, keys, result)
    if earlier is not None:
        _check_earlier(earlier, keys, result)
    return result


def summary(result: Result) -> dict[str, Any]:
    top = result.checkpoints[-1] if result.checkpoints else None
    return {
        "ok": result.ok, "entries": result.size,
        "checkpoints": len(result.checkpoints),
        "latest_checkpoint": None if top is None else {
            "size": top[0].size, "root": top[0].root.hex(),
            "signed_by": [f"{v.name}+{v.key_id.hex()}" for v in top[1].signers]},
        "records": len(result.records),
        "problems": [str(p) for p in result.problems], "warnings": result.warnings,
    }
