"""One ledger entry and its bytes: the same computation as the database trigger
(migrations/0005_ledger.sql), so that a verifier recomputes every hash offline.

data  = b"tenir-ledger/v1\\n" || seq (u64 BE) || at_us (i64 BE) || prev_hash || payload
hash  = SHA-256(0x00 || data)   (the RFC 6962 leaf hash of ``data``)

``payload`` is UTF-8 JSON (an object with at least ``kind`` and ``actor``), stored and hashed
as the bytes the writer sent; :func:`canonical_json` is how tenir writes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from failover.evidence.merkle import leaf_hash

DOMAIN = b"tenir-ledger/v1\n"
GENESIS_PREV = bytes(32)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def event_payload(kind: str, sentence: str, *, actor: str, node: str, site: str,
                  campaign_id: int | None = None,
                  details: Mapping[str, Any] | None = None) -> bytes:
    return canonical_json({"kind": kind, "actor": actor, "node": node, "site": site,
                           "campaign_id": campaign_id, "sentence": sentence,
                           "details": dict(details or {})})


def entry_data(seq: int, at_us: int, prev: bytes, payload: bytes) -> bytes:
    return (DOMAIN + seq.to_bytes(8, "big") + at_us.to_bytes(8, "big", signed=True) + prev
            + payload)


def at_from_us(at_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=at_us)


@dataclass(frozen=True)
class Entry:
    seq: int
    at_us: int
    prev: bytes
    payload: bytes
    hash: bytes  # as stored; ``computed_hash`` is what it must be

    @property
    def at(self) -> datetime:
        return at_from_us(self.at_us)

    @property
    def computed_hash(self) -> bytes:
        return leaf_hash(entry_data(self.seq, self.at_us, self.prev, self.payload))

    def doc(self) -> dict[str, Any]:
        """The payload as JSON (raises ValueError if it is not a JSON object)."""
        value = json.loads(self.payload.decode("utf-8"))
        if not isinstance(value, dict):
            raise ValueError("payload is not a JSON object")
        return value

    @property
    def kind(self) -> str:
        return str(self.doc().get("kind", ""))
