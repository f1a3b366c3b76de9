"""The limits that keep one client from stalling or exhausting a node, with their defaults.

Read from the node configuration's optional ``http`` section (``nodes/config.py``); every value
is documented, with its default, in ``docs/security.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

KiB: Final = 1024
MiB: Final = 1024 * KiB


@dataclass(frozen=True)
class HttpLimits:
    # A connection must send a complete request head within this many seconds of opening or of
    # its previous response; an idle keep-alive connection is closed after the same time.
    header_timeout_s: float = 10.0
    # Time to receive a whole body: public routes, then authenticated ones (CSV imports).
    public_body_timeout_s: float = 5.0
    body_timeout_s: float = 60.0
    # Bytes of body: public routes (callbacks, acknowledgements), authenticated JSON routes,
    # and routes that say more (the CSV import).
    public_body_bytes: int = 4 * KiB
    json_body_bytes: int = 256 * KiB
    import_body_bytes: int = 20 * MiB
    # Open connections: in all, and from one source address.
    max_connections: int = 1024
    max_connections_per_address: int = 256
    # Requests per second (and burst) from one address on public routes but /healthz.
    public_rate_per_s: float = 500.0
    public_burst: int = 1000
    # Failed authentications and refused signatures per second (and burst) from one address;
    # past them, that address gets 429 on every route but /healthz until the bucket refills.
    failures_per_s: float = 1.0
    failure_burst: int = 30
    # Source addresses remembered by the rate limiters (least recently seen forgotten first).
    tracked_addresses: int = 4096

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{f.name}: must be a positive number")
        if self.max_connections_per_address > self.max_connections:
            raise ValueError("max_connections_per_address: must be at most max_connections")

    @property
    def largest_body(self) -> int:
        return max(self.public_body_bytes, self.json_body_bytes, self.import_body_bytes)
