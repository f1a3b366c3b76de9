"""An evidence bundle: everything an auditor needs to verify the ledger offline.

On disk, a directory:

* ``bundle.json``: ``format``, ``origin``, ``size`` (entries in the ledger at export), the
  exported ``range`` [start, end) and the ``from``/``to`` times asked, the signed
  ``checkpoints`` (c2sp notes), the public ``keys`` (note verifier keys), and ``proofs``
  (consistency between successive checkpoints, inclusion of each record in the latest
  checkpoint that covers it);
* ``entries.jsonl``: one line per entry, 0 to size-1. Entries of the range (and every key
  announcement, ``evidence.key``) are whole: ``seq``, ``at_us``, ``prev``, ``hash`` (hex),
  ``payload`` (base64 of the exact bytes hashed); the others are their ``seq`` and ``hash`` only,
  enough to recompute the tree and the chain's links;
* ``records/<seq>.dsse.json``: the DSSE envelopes of the drill and incident records (copies of
  what their entries carry, for in-toto tooling);
* the reports (``report.json``, ``report.html``, ``report.pdf``) when made.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from failover.evidence import merkle
from failover.evidence.entry import Entry
from failover.evidence.ledger import Ledger
from failover.evidence.note import NoteError, parse_checkpoint, parse_note

FORMAT = "tenir-evidence-bundle/v1"
RECORD_KINDS = ("drill.record", "incident.record", "drill.scheduled", "drill.finding")
ALWAYS_WHOLE = ("evidence.key",)


class BundleError(ValueError):
    """A bundle that cannot be read; names the file and line."""


@dataclass
class Bundle:
    manifest: dict[str, Any]
    entries: list[dict[str, Any]]
    records: dict[str, Any] = field(default_factory=dict)  # seq -> envelope

    @property
    def checkpoints(self) -> list[str]:
        return [str(c) for c in self.manifest.get("checkpoints", [])]

    @property
    def keys(self) -> list[str]:
        return [str(k) for k in self.manifest.get("keys", [])]

    def to_json(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "entries": self.entries, "records": self.records}

    @classmethod
    def from_json(cls, data: Any) -> Bundle:
        if not isinstance(data, dict) or not isinstance(data.get("manifest"), dict) \
                or not isinstance(data.get("entries"), list):
            raise BundleError("bundle: expected an object with manifest and entries")
        return cls(data["manifest"], list(data["entries"]), dict(data.get("records") or {}))


def entry_json(e: Entry, whole: bool) -> dict[str, Any]:
    if not whole:
        return {"seq": e.seq, "hash": e.hash.hex()}
    return {"seq": e.seq, "at_us": e.at_us, "prev": e.prev.hex(), "hash": e.hash.hex(),
            "payload": base64.b64encode(e.payload).decode()}


def entry_from_json(line: dict[str, Any]) -> Entry | None:
    """The entry of a whole line; None for a hash-only line. Raises ValueError if malformed."""
    if "payload" not in line:
        return None
    return Entry(seq=int(line["seq"]), at_us=int(line["at_us"]), prev=bytes.fromhex(line["prev"]),
                 payload=base64.b64decode(line["payload"], validate=True),
                 hash=bytes.fromhex(line["hash"]))


def _kind(e: Entry) -> str:
    try:
        return e.kind
    except ValueError:
        return ""


async def collect(ledger: Ledger, *, origin: str, keys: list[str], since: datetime | None,
                  until: datetime | None) -> Bundle:
    """Read the ledger into a bundle: whole entries from ``since`` to ``until``."""
    size = await ledger.size()
    start, end = await ledger.seq_range(since, until)
    entries = await ledger.entries(0, size)
    leaves = [e.hash for e in entries]
    stored = [c for c in await ledger.checkpoints() if c.size <= size]
    lines = [entry_json(e, start <= e.seq < end or _kind(e) in ALWAYS_WHOLE) for e in entries]
    records: dict[str, Any] = {}
    inclusion = []
    for e in entries[start:end]:
        if _kind(e) in RECORD_KINDS:
            records[str(e.seq)] = e.doc().get("details", {}).get("envelope")
            cover = next((c for c in reversed(stored) if c.size > e.seq), None)
            if cover is not None:
                proof = merkle.inclusion_proof(e.seq, leaves[:cover.size])
                inclusion.append({"seq": e.seq, "size": cover.size,
                                  "proof": [base64.b64encode(p).decode() for p in proof]})
    consistency = [{"from": a.size, "to": b.size,
                    "proof": [base64.b64encode(p).decode()
                              for p in merkle.consistency_proof(a.size, leaves[:b.size])]}
                   for a, b in itertools.pairwise(stored)]
    manifest = {
        "format": FORMAT, "origin": origin, "size": size, "range": [start, end],
        "from": since.isoformat() if since else None, "to": until.isoformat() if until else None,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoints": [c.note for c in stored], "keys": sorted(set(keys)),
        "proofs": {"consistency": consistency, "inclusion": inclusion},
    }
    return Bundle(manifest, lines, records)


def write(bundle: Bundle, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bundle.json").write_text(json.dumps(bundle.manifest, indent=2) + "\n",
                                     encoding="utf-8")
    with (out / "entries.jsonl").open("w", encoding="utf-8") as fh:
        for line in bundle.entries:
            fh.write(json.dumps(line, separators=(",", ":")) + "\n")
    if bundle.records:
        rec = out / "records"
        rec.mkdir(exist_ok=True)
        for seq, env in bundle.records.items():
            (rec / f"{int(seq):08d}.dsse.json").write_text(json.dumps(env, indent=2) + "\n",
                                                           encoding="utf-8")


def read(path: Path) -> Bundle:
    """A bundle directory (or its bundle.json). Raises :class:`BundleError` naming the file."""
    root = path.parent if path.name == "bundle.json" else path
    try:
        manifest = json.loads((root / "bundle.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{root / 'bundle.json'}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{root / 'bundle.json'}: not a {FORMAT} bundle")
    entries: list[dict[str, Any]] = []
    try:
        text = (root / "entries.jsonl").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{root / 'entries.jsonl'}: {exc}") from exc
    for n, line in enumerate(text.splitlines(), 1):
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise BundleError(f"entries.jsonl line {n}: not JSON ({exc})") from exc
        if not isinstance(item, dict) or not isinstance(item.get("seq"), int):
            raise BundleError(f"entries.jsonl line {n}: an entry needs an integer seq")
        entries.append(item)
    records: dict[str, Any] = {}
    for f in sorted((root / "records").glob("*.dsse.json")) if (root / "records").is_dir() else []:
        try:
            records[str(int(f.name.split(".")[0]))] = json.loads(f.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise BundleError(f"{f}: {exc}") from exc
    return Bundle(manifest, entries, records)


def latest_checkpoint(bundle: Bundle) -> tuple[int, bytes] | None:
    """(size, root) of the bundle's last checkpoint, unverified (None if it has none)."""
    for note in reversed(bundle.checkpoints):
        try:
            cp = parse_checkpoint(parse_note(note).text)
        except NoteError:
            continue
        return cp.size, cp.root
    return None


def b64list(items: Any) -> list[bytes]:
    if not isinstance(items, list):
        raise ValueError("a proof is a list of base64 hashes")
    try:
        return [base64.b64decode(x, validate=True) for x in items]
    except (binascii.Error, TypeError) as exc:
        raise ValueError(f"a proof hash is not base64 ({exc})") from exc
