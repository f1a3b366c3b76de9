"""Signed acknowledgement links and voice callback URLs.

A node hands out two kinds of URL that come back without a bearer token: the acknowledgement
link of an e-mail (``/api/v1/ack/{reference}?sig=...``) and the voice carrier's callback URL
(``/api/v1/callbacks/voice?sig=...``, the reference being in the callback's body). Each carries
``sig = <key id>.<HMAC-SHA256>`` (base64url, unpadded) over::

    tenir-ack-v1 NUL purpose NUL campaign NUL recipient NUL reference

where ``purpose`` is ``link`` or ``voice`` (a link's signature is no callback's), and campaign and
recipient are read from the reference (``campaign:recipient:channel:step.attempt``): the
signature binds the attempt and the person it was sent to, so no other reference, recipient or
channel can be acknowledged with it.

Keys are per cluster (``ack_keys`` in the node configuration, one ``{id, secret}`` each); the
first signs, all verify. Rotation: add the new key first, keep the old ones after it until the
links they signed have expired (the longest acknowledgement timeout), then remove them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

Purpose = Literal["link", "voice"]
SignatureVerdict = Literal["ok", "unsigned", "bad_signature", "unknown_key"]

MIN_SECRET: Final = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}\Z")
_REFERENCE = re.compile(r"(\d{1,18}):(\d{1,18}):(sms|email|voice):\d{1,9}(?:\.\d{1,9})?\Z")
_MAC_CHARS: Final = 43  # 32 bytes in unpadded base64url
_MAX_SIGNATURE: Final = 16 + 1 + _MAC_CHARS


@dataclass(frozen=True)
class AckKey:
    id: str
    secret: str

    def __post_init__(self) -> None:
        if not _KEY_ID.match(self.id):
            raise ValueError("id: 1 to 16 letters, digits, '_' or '-'")
        if len(self.secret) < MIN_SECRET:
            raise ValueError(f"secret: at least {MIN_SECRET} characters")

    def __repr__(self) -> str:  # never the secret, even in a traceback
        return f"AckKey(id={self.id!r}, secret=...)"


def parse_reference(reference: str) -> tuple[int, int, str] | None:
    """(campaign, recipient, channel) of a well-formed reference, else None."""
    m = _REFERENCE.match(reference)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), m.group(3)


def _message(purpose: Purpose, reference: str) -> bytes:
    parsed = parse_reference(reference)
    if parsed is None:
        raise ValueError("reference: not campaign:recipient:channel:step.attempt")
    campaign, recipient, _ = parsed
    return b"\0".join([b"tenir-ack-v1", purpose.encode(), str(campaign).encode(),
                       str(recipient).encode(), reference.encode()])


def _mac(key: AckKey, message: bytes) -> str:
    digest = hmac.new(key.secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class AckSigner:
    """Signs with the first key, verifies with any."""

    def __init__(self, keys: Sequence[AckKey]) -> None:
        if not keys:
            raise ValueError("ack_keys: at least one key")
        ids = [k.id for k in keys]
        if len(set(ids)) != len(ids):
            raise ValueError("ack_keys: two keys with the same id")
        self._keys = {k.id: k for k in keys}
        self._current = keys[0]

    def sign(self, purpose: Purpose, reference: str) -> str:
        return f"{self._current.id}.{_mac(self._current, _message(purpose, reference))}"

    def verify(self, purpose: Purpose, reference: str, signature: str | None) -> SignatureVerdict:
        """Whether ``signature`` is this node's for ``reference`` and ``purpose``."""
        if not signature:
            return "unsigned"
        if len(signature) > _MAX_SIGNATURE or parse_reference(reference) is None:
            return "bad_signature"
        key_id, dot, mac = signature.partition(".")
        if not dot:
            return "bad_signature"
        key = self._keys.get(key_id)
        if key is None:
            return "unknown_key"
        expected = _mac(key, _message(purpose, reference))
        if not hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace")):
            return "bad_signature"
        return "ok"


@dataclass(frozen=True)
class CallbackUrls:
    """The URLs a node gives out for ``reference``: its e-mail link, its voice callback."""

    base_url: str  # the node's public URL, without a trailing slash
    signer: AckSigner

    def link(self, reference: str) -> str:
        return f"{self.base_url}/api/v1/ack/{reference}?sig={self.signer.sign('link', reference)}"

    def voice(self, reference: str) -> str:
        return (f"{self.base_url}/api/v1/callbacks/voice"
                f"?sig={self.signer.sign('voice', reference)}")
