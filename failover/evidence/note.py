"""Signed notes (c2sp.org/signed-note), checkpoints (c2sp.org/tlog-checkpoint) and witness
cosignatures (c2sp.org/tlog-cosignature, cosignature/v1).

A signed note is its text (ending in a newline), an empty line, then signature lines
``— <key name> base64(key id || signature)``. A checkpoint's text is the origin line, the tree
size in decimal, the base64 root hash, then optional extension lines. A cosignature signs
``cosignature/v1\\ntime <t>\\n`` followed by the checkpoint text; its blob is
key id || u64 big-endian timestamp || Ed25519 signature.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from failover.evidence.keys import COSIGNATURE_V1, ED25519, Signer, Verifier

DASH = "\u2014"
MAX_SIGNATURES = 32


class NoteError(ValueError):
    """A malformed note or checkpoint, or signatures that do not verify; says which."""


@dataclass(frozen=True)
class SignatureLine:
    name: str
    key_id: bytes
    blob: bytes  # what follows the key id

    def render(self) -> str:
        return f"{DASH} {self.name} {base64.b64encode(self.key_id + self.blob).decode()}\n"


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[SignatureLine, ...] = ()

    def render(self) -> str:
        return self.text + "\n" + "".join(s.render() for s in self.signatures)

    def with_signatures(self, more: Iterable[SignatureLine]) -> Note:
        seen = {(s.name, s.key_id) for s in self.signatures}
        extra = tuple(s for s in more if (s.name, s.key_id) not in seen)
        return Note(self.text, self.signatures + extra)


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("note text contains a control character")


def parse_note(msg: str) -> Note:
    _check_text(msg)
    split = msg.rfind("\n\n")
    if split < 0:
        raise NoteError("no empty line between the text and the signatures")
    text, sig_block = msg[:split + 1], msg[split + 2:]
    lines = sig_block.split("\n")
    if lines[-1] != "":
        raise NoteError("signature block must end with a newline")
    sigs: list[SignatureLine] = []
    for i, line in enumerate(lines[:-1], 1):
        if not line.startswith(DASH + " "):
            raise NoteError(f"signature line {i} does not start with '{DASH} '")
        parts = line[2:].split(" ")
        if len(parts) != 2 or not parts[0]:
            raise NoteError(f"signature line {i} is not '{DASH} <name> <base64>'")
        try:
            raw = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise NoteError(f"signature line {i} ({parts[0]}): not base64") from exc
        if len(raw) < 5:
            raise NoteError(f"signature line {i} ({parts[0]}): too short")
        sigs.append(SignatureLine(parts[0], raw[:4], raw[4:]))
    if not sigs:
        raise NoteError("a signed note needs at least one signature line")
    if len(sigs) > MAX_SIGNATURES:
        raise NoteError(f"more than {MAX_SIGNATURES} signatures")
    return Note(text, tuple(sigs))


def sign(text: str, signer: Signer) -> SignatureLine:
    """An Ed25519 (type 0x01) note signature over ``text``."""
    _check_text(text)
    if signer.key_type != ED25519:
        raise NoteError(f"key {signer.name} is not a note signing key (type 0x01)")
    return SignatureLine(signer.name, signer.key_id, signer.sign(text.encode()))


def cosignature_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


def cosign(text: str, signer: Signer, timestamp: int) -> SignatureLine:
    """A cosignature/v1 (type 0x04) over checkpoint ``text`` at POSIX time ``timestamp``."""
    _check_text(text)
    if signer.key_type != COSIGNATURE_V1:
        raise NoteError(f"key {signer.name} is not a witness cosigner key (type 0x04)")
    if not 0 <= timestamp < 2**63:
        raise NoteError("cosignature timestamp out of range")
    sig = signer.sign(cosignature_message(text, timestamp))
    return SignatureLine(signer.name, signer.key_id, timestamp.to_bytes(8, "big") + sig)


@dataclass(frozen=True)
class Verified:
    """Which known keys signed the note (``signers``), with the cosigners' timestamps."""

    text: str
    signers: tuple[Verifier, ...]
    timestamps: dict[str, int] = field(default_factory=dict)  # cosigner name -> time


def verify(note: Note, known: Sequence[Verifier]) -> Verified:
    """Check each signature of a known key (same name and key id); ignore unknown ones.
    Raises :class:`NoteError` if a known key's signature fails, or if none verified."""
    by_id = {(v.name, v.key_id): v for v in known}
    ok: list[Verifier] = []
    stamps: dict[str, int] = {}
    for s in note.signatures:
        v = by_id.get((s.name, s.key_id))
        if v is None:
            continue
        if v.key_type == ED25519:
            good = v.verify(note.text.encode(), s.blob)
        else:
            if len(s.blob) != 8 + 64:
                raise NoteError(f"cosignature of {s.name} is {len(s.blob)} bytes, not 72")
            ts = int.from_bytes(s.blob[:8], "big")
            good = v.verify(cosignature_message(note.text, ts), s.blob[8:])
            stamps[v.name] = ts
        if not good:
            raise NoteError(f"the signature of {s.name} (key {s.key_id.hex()}) does not verify")
        ok.append(v)
    if not ok:
        names = ", ".join(f"{s.name} ({s.key_id.hex()})" for s in note.signatures)
        raise NoteError(f"no signature by a trusted key (signed by: {names})")
    return Verified(note.text, tuple(ok), stamps)


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(),
                 *self.extensions]
        return "\n".join(lines) + "\n"


def parse_checkpoint(text: str) -> Checkpoint:
    _check_text(text)
    lines = text.split("\n")[:-1]
    if len(lines) < 3:
        raise NoteError("a checkpoint has an origin, a size and a root hash line")
    origin, size_s, root_s, *ext = lines
    if not origin:
        raise NoteError("empty checkpoint origin")
    if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
        raise NoteError(f"checkpoint size {size_s!r} is not a decimal without leading zeros")
    try:
        root = base64.b64decode(root_s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError("checkpoint root hash is not base64") from exc
    if len(root) != 32:
        raise NoteError(f"checkpoint root hash is {len(root)} bytes, not 32")
    if any(not line for line in ext):
        raise NoteError("empty checkpoint extension line")
    return Checkpoint(origin, int(size_s), root, tuple(ext))
