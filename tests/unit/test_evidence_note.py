"""Signed notes, keys and cosignatures: byte for byte against Go's sumdb/note reference example
(Ed25519 is deterministic), and the refusals a verifier owes."""

from __future__ import annotations

from pathlib import Path

import pytest

from failover.evidence import keys, note
from failover.evidence.note import Checkpoint, NoteError

pytestmark = pytest.mark.unit

GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = GO_TEXT + "\n" + ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuG"
                            "UgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")


def test_keys_and_signature_match_the_go_reference_example() -> None:
    signer = keys.parse_signer(GO_SKEY)
    assert signer.verifier.vkey == GO_VKEY
    assert signer.skey == GO_SKEY
    signed = note.Note(GO_TEXT, (note.sign(GO_TEXT, signer),))
    assert signed.render() == GO_NOTE
    verified = note.verify(note.parse_note(GO_NOTE), [keys.parse_verifier(GO_VKEY)])
    assert verified.text == GO_TEXT


def test_a_changed_text_or_a_wrong_key_id_is_refused() -> None:
    v = keys.parse_verifier(GO_VKEY)
    with pytest.raises(NoteError, match="does not verify"):
        note.verify(note.parse_note(GO_NOTE.replace("problem,", "problem;")), [v])
    with pytest.raises(keys.KeyFileError, match="key id"):
        keys.parse_verifier(GO_VKEY.replace("c74f20a3", "c74f20a4"))
    other = keys.generate("PeterNeumann").verifier  # same name, another key: ignored
    with pytest.raises(NoteError, match="no signature by a trusted key"):
        note.verify(note.parse_note(GO_NOTE), [other])


def test_checkpoint_cosigned_by_a_witness_round_trips() -> None:
    site = keys.generate("tenir/paris")
    witness = keys.generate("tenir/witness", keys.COSIGNATURE_V1)
    cp = Checkpoint("tenir.invalid/lab/ledger", 12, bytes(range(32)))
    text = cp.text()
    assert text == "tenir.invalid/lab/ledger\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    signed = note.Note(text, (note.sign(text, site), note.cosign(text, witness, 1_700_000_000)))
    parsed = note.parse_note(signed.render())
    verified = note.verify(parsed, [site.verifier, witness.verifier])
    assert [v.name for v in verified.signers] == ["tenir/paris", "tenir/witness"]
    assert verified.timestamps == {"tenir/witness": 1_700_000_000}
    assert note.parse_checkpoint(parsed.text) == cp
    # the cosignature covers its timestamp: moving it breaks the signature
    line = parsed.signatures[1]
    moved = note.SignatureLine(line.name, line.key_id,
                               (1_700_000_001).to_bytes(8, "big") + line.blob[8:])
    with pytest.raises(NoteError, match="tenir/witness"):
        note.verify(note.Note(parsed.text, (parsed.signatures[0], moved)),
                    [site.verifier, witness.verifier])


def test_malformed_checkpoints_are_refused_with_the_reason() -> None:
    for text, reason in [("o\n012\nAAAA\n", "leading zeros"), ("o\n1\n", "origin, a size"),
                         ("o\n1\nAAAA\n", "not 32"), ("o\n1\n!!\n", "not base64")]:
        with pytest.raises(NoteError, match=reason):
            note.parse_checkpoint(text)
    with pytest.raises(NoteError, match="no empty line"):
        note.parse_note("text\n\u2014 a AAAAAAA=\n")


def test_keygen_files_are_private_and_never_overwritten(tmp_path: Path) -> None:
    signer = keys.generate("tenir/paris")
    private, public = keys.write_pair(signer, tmp_path, "paris")
    assert private.stat().st_mode & 0o777 == 0o600
    assert keys.load_signer(private).verifier == keys.load_verifier(public)
    with pytest.raises(keys.KeyFileError, match="never overwritten"):
        keys.write_pair(keys.generate("tenir/paris"), tmp_path, "paris")
    assert keys.load_signer(private).key_id == signer.key_id
