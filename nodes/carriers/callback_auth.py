"""The voice carrier's signature on its callbacks, and its check by the node.

The carrier sends ``X-Tenir-Carrier-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` where the
HMAC, keyed with a secret shared by the carrier and the nodes, covers ``"<t>." + body``. The node
accepts a callback whose ``t`` is within ``WINDOW_S`` of its own clock and one of whose ``v1``
values matches one of its secrets (several secrets: a rotation in progress), and that it has not
seen before (a bounded memory of recent signatures refuses an exact replay within the window).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final, Literal

HEADER: Final = "X-Tenir-Carrier-Signature"
WINDOW_S: Final = 300.0
MIN_SECRET: Final = 32
_MAX_HEADER: Final = 1024

CarrierVerdict = Literal["ok", "carrier_unsigned", "carrier_bad_signature", "stale", "replayed"]


def _mac(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign_callback(secret: str, body: bytes, now: float | None = None) -> str:
    """The header value for ``body`` sent at ``now`` (default: the current time)."""
    timestamp = str(int(time.time() if now is None else now))
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


class CallbackVerifier:
    def __init__(self, secrets: Sequence[str], window_s: float = WINDOW_S,
                 remember: int = 65536) -> None:
        if not secrets:
            raise ValueError("voice_callback_secrets: at least one secret")
        self._secrets = tuple(secrets)
        self.window_s = window_s
        self._remember = remember
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify(self, header: str | None, body: bytes, now: float | None = None) -> CarrierVerdict:
        if not header:
            return "carrier_unsigned"
        if len(header) > _MAX_HEADER:
            return "carrier_bad_signature"
        timestamp = ""
        macs: list[str] = []
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            if name == "t":
                timestamp = value
            elif name == "v1":
                macs.append(value)
        if not timestamp.isdigit() or len(timestamp) > 12 or not macs:
            return "carrier_bad_signature"
        now = time.time() if now is None else now
        if abs(now - int(timestamp)) > self.window_s:
            return "stale"
        expected = [_mac(secret, timestamp, body) for secret in self._secrets]
        match = next((m for m in macs for e in expected
                      if hmac.compare_digest(e.encode(), m.encode("utf-8", "replace"))), None)
        if match is None:
            return "carrier_bad_signature"
        return self._first_time(match, now)

    def _first_time(self, mac: str, now: float) -> CarrierVerdict:
        while self._seen and next(iter(self._seen.values())) < now - self.window_s:
            self._seen.popitem(last=False)
        if mac in self._seen:
            return "replayed"
        self._seen[mac] = now
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return "ok"
