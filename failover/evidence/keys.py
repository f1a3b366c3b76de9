"""Ed25519 keys in the signed-note encodings (c2sp.org/signed-note, Go's sumdb/note):

* verifier key (public, ``<site>.pub``): ``<name>+<key id hex>+base64(type || public key)``;
* signer key (private, ``<site>.key``): ``PRIVATE+KEY+<name>+<key id hex>+base64(type || seed)``;

with key id = SHA-256(name || 0x0A || type || public key)[:4]. Type 0x01 signs notes (the
datacenter sites' checkpoints, DSSE records); type 0x04 is a timestamped witness cosigner
(c2sp.org/tlog-cosignature). ``tenir evidence keygen`` writes one pair per site.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

T = TypeVar("T")
ED25519 = 0x01
COSIGNATURE_V1 = 0x04
KEY_TYPES = {ED25519: "ed25519", COSIGNATURE_V1: "cosignature/v1"}


class KeyFileError(ValueError):
    """A key file or key string that cannot be used; the message says why."""


def key_id(name: str, key_type: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public).digest()[:4]


def check_name(name: str) -> str:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise KeyFileError(f"key name {name!r} must be non-empty, without spaces or '+'")
    return name


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    """A public key as a note verifier: name, type and key id identify it."""

    name: str
    key_type: int
    public: bytes  # 32 bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.key_type, self.public)

    @property
    def vkey(self) -> str:
        blob = base64.b64encode(bytes([self.key_type]) + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    key_type: int
    private: Ed25519PrivateKey

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_type, _raw_public(self.private.public_key()))

    @property
    def key_id(self) -> bytes:
        return self.verifier.key_id

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    @property
    def skey(self) -> str:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        blob = base64.b64encode(bytes([self.key_type]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{blob}"


def generate(name: str, key_type: int = ED25519) -> Signer:
    if key_type not in KEY_TYPES:
        raise KeyFileError(f"unknown key type {key_type:#04x}")
    return Signer(check_name(name), key_type, Ed25519PrivateKey.generate())


def _split_key(text: str, parts: int, what: str) -> list[str]:
    fields = text.strip().split("+", parts - 1)
    if len(fields) != parts:
        raise KeyFileError(f"{what} must be {'PRIVATE+KEY+' if parts == 5 else ''}"
                        "name+keyid+base64, got a string with too few '+'")
    return fields


def _decode(blob: str, what: str) -> tuple[int, bytes]:
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFileError(f"{what}: key material is not base64 ({exc})") from exc
    if len(raw) != 33 or raw[0] not in KEY_TYPES:
        raise KeyFileError(f"{what}: expected 1 type byte (0x01 or 0x04) and 32 key bytes")
    return raw[0], raw[1:]


def parse_verifier(vkey: str) -> Verifier:
    name, hexid, blob = _split_key(vkey, 3, "a verifier key")
    key_type, public = _decode(blob, f"verifier key {name}")
    v = Verifier(check_name(name), key_type, public)
    if v.key_id.hex() != hexid.lower():
        raise KeyFileError(f"verifier key {name}: key id {hexid} does not match the key "
                        f"(expected {v.key_id.hex()})")
    return v


def parse_signer(skey: str) -> Signer:
    fields = _split_key(skey, 5, "a signer key")
    if fields[:2] != ["PRIVATE", "KEY"]:
        raise KeyFileError("a signer key starts with PRIVATE+KEY+")
    name, hexid, blob = fields[2:]
    key_type, seed = _decode(blob, f"signer key {name}")
    signer = Signer(check_name(name), key_type, Ed25519PrivateKey.from_private_bytes(seed))
    if signer.key_id.hex() != hexid.lower():
        raise KeyFileError(f"signer key {name}: key id {hexid} does not match the key")
    return signer


def _load(path: str | Path, parse: Callable[[str], T]) -> T:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"{p}: {exc.strerror or exc}") from exc
    try:
        return parse(text)
    except KeyFileError as exc:
        raise KeyFileError(f"{p}: {exc}") from exc


def load_signer(path: str | Path) -> Signer:
    return _load(path, parse_signer)


def load_verifier(path: str | Path) -> Verifier:
    return _load(path, parse_verifier)


def write_pair(signer: Signer, out: Path, stem: str) -> tuple[Path, Path]:
    """``<out>/<stem>.key`` (mode 0600, created exclusively: an existing key is never
    overwritten) and ``<out>/<stem>.pub``."""
    out.mkdir(parents=True, exist_ok=True)
    private, public = out / f"{stem}.key", out / f"{stem}.pub"
    if private.exists():
        raise KeyFileError(f"{private} exists: a key is never overwritten (rotate into a new "
                        "directory, see docs/evidence.md)")
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(signer.skey + "\n")
    public.write_text(signer.verifier.vkey + "\n", encoding="utf-8")
    return private, public
