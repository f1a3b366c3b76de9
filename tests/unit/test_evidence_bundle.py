"""Export and offline verification of a bundle, and the tampering each check catches: every
case names the entry (or the checkpoint) at fault."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path

import pytest

from failover.evidence import bundle as bundle_mod
from failover.evidence import keys, note
from failover.evidence.verify import verify_bundle
from tests.evidence_kit import ORIGIN, export, fill, make_kit
from tests.fakes.memory_ledger import MemoryLedger

pytestmark = pytest.mark.unit


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, list[str]]:
    ledger = MemoryLedger()
    kit = make_kit(ledger, tmp_path)

    async def go() -> Path:
        await fill(ledger, kit)
        return await export(ledger, kit, tmp_path / "bundle")

    return asyncio.run(go()), kit.vkeys


def _lines(path: Path) -> list[str]:
    return (path / "entries.jsonl").read_text().splitlines()


def _write(path: Path, lines: list[str]) -> None:
    (path / "entries.jsonl").write_text("\n".join(lines) + "\n")


def _verify(path: Path, trusted: list[str], **kw: object) -> list[str]:
    result = verify_bundle(bundle_mod.read(path), trusted=trusted, **kw)  # type: ignore[arg-type]
    return [str(p) for p in result.problems]


def test_a_fresh_bundle_verifies_offline(exported: tuple[Path, list[str]]) -> None:
    path, trusted = exported
    result = verify_bundle(bundle_mod.read(path), trusted=trusted)
    assert result.ok, result.problems
    assert result.size == 14 and len(result.checkpoints) == 2
    assert [r.record["type"] for r in result.records.values()] == ["schedule", "schedule",
                                                                   "drill"]
    assert sorted(p.name for p in (path / "records").iterdir())[0].endswith(".dsse.json")


def test_one_byte_of_an_entry_changed_names_it(exported: tuple[Path, list[str]]) -> None:
    path, trusted = exported
    lines = _lines(path)
    item = json.loads(lines[6])
    payload = base64.b64decode(item["payload"]).replace(b"moved 4", b"moved 5")
    item["payload"] = base64.b64encode(payload).decode()
    lines[6] = json.dumps(item)
    _write(path, lines)
    assert _verify(path, trusted)[0] == ("entry 6: its content does not match its hash "
                                         "(changed after it was written)")


def test_an_entry_deleted_names_it(exported: tuple[Path, list[str]]) -> None:
    path, trusted = exported
    lines = _lines(path)
    del lines[5]
    _write(path, lines)
    assert _verify(path, trusted)[0] == ("entry 5: is missing: the bundle goes from entry 4 to "
                                         "entry 6 (deleted)")


def test_two_entries_swapped_names_the_first(exported: tuple[Path, list[str]]) -> None:
    path, trusted = exported
    lines = _lines(path)
    lines[7], lines[8] = lines[8], lines[7]
    _write(path, lines)
    assert _verify(path, trusted)[0].startswith("entry 7: out of place: entry 8 stands where")


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(
        exported: tuple[Path, list[str]]) -> None:
    """Change entry 6 and recompute every hash after it: the chain holds, the root does not."""
    from failover.evidence.bundle import entry_from_json, entry_json
    from failover.evidence.entry import Entry

    path, trusted = exported
    lines = [json.loads(x) for x in _lines(path)]
    prev = bytes.fromhex(lines[5]["hash"])
    for i in range(6, len(lines)):
        e = entry_from_json(lines[i])
        assert e is not None
        payload = e.payload.replace(b"moved 4", b"moved 9") if i == 6 else e.payload
        fresh = Entry(e.seq, e.at_us, prev, payload, b"")
        fixed = Entry(e.seq, e.at_us, prev, payload, fresh.computed_hash)
        lines[i] = entry_json(fixed, True)
        prev = fixed.hash
    _write(path, [json.dumps(x) for x in lines])
    problems = _verify(path, trusted)
    assert problems[0].startswith("checkpoint of size 8 (entries 0..7): its root is not the "
                                  "root of the entries' tree: an entry before 8 was changed")


def test_a_checkpoint_signed_by_another_key_names_it(exported: tuple[Path, list[str]]) -> None:
    path, trusted = exported
    manifest = json.loads((path / "bundle.json").read_text())
    old = note.parse_note(manifest["checkpoints"][1])
    impostor = keys.generate("tenir/paris")  # same name, another key
    manifest["checkpoints"][1] = note.Note(old.text, (note.sign(old.text, impostor),
                                                      old.signatures[1])).render()
    (path / "bundle.json").write_text(json.dumps(manifest))
    problems = _verify(path, trusted)
    assert problems == ["checkpoint of size 14 (entries 0..13): is not signed by a trusted site "
                        "key"]


def test_a_bundle_contradicting_an_earlier_checkpoint_names_the_entry(tmp_path: Path) -> None:
    """Two histories: the same site key signs a forked ledger (the database rewritten), and a
    witness that never saw the first history cosigns it. Alone it verifies; beside the earlier
    bundle, the contradiction is found and the first differing entry named."""
    ledger_a, ledger_b = MemoryLedger(), MemoryLedger()
    kit_a = make_kit(ledger_a, tmp_path / "a")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    kit_b = make_kit(ledger_b, tmp_path / "b", paris=kit_a.paris, witness=kit_a.witness)

    async def go() -> None:
        await fill(ledger_a, kit_a)
        for e in ledger_a.items[:9]:  # the same first 9 entries, then another entry 9
            ledger_b.append_payload(e.payload, e.at_us)
        ledger_b.append_payload(b'{"kind":"operator.note","actor":"x","sentence":"forked"}')
        await kit_b.checkpointer.once()
        await export(ledger_a, kit_a, tmp_path / "earlier")
        await export(ledger_b, kit_b, tmp_path / "later")

    asyncio.run(go())
    assert _verify(tmp_path / "later", kit_a.vkeys) == []
    problems = _verify(tmp_path / "later", kit_a.vkeys,
                       earlier=bundle_mod.read(tmp_path / "earlier"))
    assert problems == ["earlier checkpoint of size 14: this bundle has only 10 entries: entries "
                        "were removed; entry 9 differs"]


def test_the_witness_refuses_to_cosign_a_second_history(tmp_path: Path) -> None:
    ledger_a, ledger_b = MemoryLedger(), MemoryLedger()
    kit = make_kit(ledger_a, tmp_path)

    async def go() -> None:
        await fill(ledger_a, kit, events=4)
        for e in ledger_a.items[:5]:
            ledger_b.append_payload(e.payload, e.at_us)
        for i in range(12):
            ledger_b.append_payload(b'{"kind":"operator.note","actor":"x","n":%d}' % i)
        kit.checkpointer.ledger = ledger_b
        kit.checkpointer._leaves = []
        with pytest.raises(Exception, match=r"witness: 422: consistency proof"):
            await kit.checkpointer.once()

    asyncio.run(go())


def test_an_earlier_bundle_that_agrees_passes(tmp_path: Path) -> None:
    ledger = MemoryLedger()
    kit = make_kit(ledger, tmp_path)

    async def go() -> None:
        await fill(ledger, kit, events=4)
        await export(ledger, kit, tmp_path / "first")
        await fill(ledger, kit, events=4)
        await export(ledger, kit, tmp_path / "second")

    asyncio.run(go())
    assert _verify(tmp_path / "second", kit.vkeys,
                   earlier=bundle_mod.read(tmp_path / "first")) == []
    shutil.rmtree(tmp_path / "first")
    assert ORIGIN in (tmp_path / "second" / "bundle.json").read_text()
