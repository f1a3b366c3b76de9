"""Key rotation is an entry of the ledger, and a verifier accepts a site key only once the ledger
announced it; ``tenir evidence keygen`` and ``verify`` from the command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from cluster.cli import main as tenir
from failover.evidence import bundle as bundle_mod
from failover.evidence import keys
from failover.evidence.checkpointer import Checkpointer
from failover.evidence.verify import verify_bundle
from failover.evidence.witness_client import LocalWitness
from tests.evidence_kit import ORIGIN, Kit, export, fill, make_kit
from tests.fakes.memory_ledger import MemoryLedger

pytestmark = pytest.mark.unit


def other_key(kit: Kit, ledger: MemoryLedger, node: str) -> tuple[keys.Signer, Checkpointer]:
    """A second paris key the witness accepts, and a checkpointer signing with it."""
    signer = keys.generate("tenir/paris")
    kit.witness_core.logs[ORIGIN].append(signer.verifier)
    return signer, Checkpointer(ledger, signer, origin=ORIGIN, node=node, site="paris",
                                witness=LocalWitness(kit.witness_core),
                                witness_key=kit.witness.verifier)


def test_a_rotation_is_recorded_and_checkpoints_signed_by_the_new_key_verify(
        tmp_path: Path) -> None:
    ledger = MemoryLedger()
    kit = make_kit(ledger, tmp_path)
    new, rotated = other_key(kit, ledger, "paris-node2")

    async def go() -> None:
        await fill(ledger, kit, events=4)
        assert await kit.checkpointer.announce_key() is None  # the same key: nothing new
        seq = await rotated.announce_key()
        assert seq is not None
        doc = ledger.items[seq].doc()
        assert doc["details"]["previous"] == kit.paris.verifier.vkey
        assert "rotated: replaces tenir/paris+" in doc["sentence"]
        await ledger.append("operator.note", "after the rotation", actor="x", node="n",
                            site="paris")
        assert await rotated.once() is not None
        await export(ledger, kit, tmp_path / "bundle")

    asyncio.run(go())
    trusted = [*kit.vkeys, new.verifier.vkey]
    result = verify_bundle(bundle_mod.read(tmp_path / "bundle"), trusted=trusted)
    assert result.ok, result.problems
    assert result.checkpoints[-1][1].signers[0].name == "tenir/paris"


def test_a_checkpoint_signed_by_a_key_the_ledger_never_announced_is_refused(
        tmp_path: Path) -> None:
    ledger = MemoryLedger()
    kit = make_kit(ledger, tmp_path)
    stranger, unannounced = other_key(kit, ledger, "x")

    async def go() -> None:
        await fill(ledger, kit, events=4)
        await ledger.append("operator.note", "more", actor="x", node="n", site="paris")
        await unannounced.once()
        await export(ledger, kit, tmp_path / "bundle")

    asyncio.run(go())
    result = verify_bundle(bundle_mod.read(tmp_path / "bundle"),
                           trusted=[*kit.vkeys, stranger.verifier.vkey])
    assert [str(p) for p in result.problems] == [
        f"checkpoint of size 9 (entries 0..8): signed by tenir/paris "
        f"({stranger.key_id.hex()}), a key the ledger did not announce before it "
        "(evidence.key)"]


def test_keygen_and_verify_on_the_command_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert tenir(["evidence", "keygen", "--site", "witness", "--witness", "--out",
                  str(tmp_path / "keys")]) == 0
    assert keys.load_verifier(tmp_path / "keys" / "witness.pub").key_type == \
        keys.COSIGNATURE_V1
    capsys.readouterr()
    ledger = MemoryLedger()
    kit = make_kit(ledger, tmp_path)

    async def go() -> None:
        await fill(ledger, kit, events=4)
        await export(ledger, kit, tmp_path / "bundle")

    asyncio.run(go())
    (tmp_path / "paris.pub").write_text(kit.paris.verifier.vkey + "\n")
    (tmp_path / "w.pub").write_text(kit.witness.verifier.vkey + "\n")
    trust = ["--trust", str(tmp_path / "paris.pub"), str(tmp_path / "w.pub")]
    assert tenir(["evidence", "verify", str(tmp_path / "bundle"), *trust]) == 0
    assert capsys.readouterr().out.startswith("verified: 8 entries, 2 checkpoints")
    lines = (tmp_path / "bundle" / "entries.jsonl").read_text().splitlines()
    item = json.loads(lines[3])
    item["hash"] = "00" * 32
    lines[3] = json.dumps(item)
    (tmp_path / "bundle" / "entries.jsonl").write_text("\n".join(lines) + "\n")
    assert tenir(["evidence", "verify", str(tmp_path / "bundle"), *trust]) == 1
    assert "FAILED: entry 3: its content does not match its hash" in capsys.readouterr().err
