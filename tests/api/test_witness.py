"""The witness cosigner over HTTP (c2sp tlog-witness add-checkpoint) on 127.0.0.1: it cosigns a
checkpoint that extends the last one it cosigned, answers each refusal with the status the
specification gives, and keeps its state across a restart; its command refuses a bad config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from failover.evidence import keys, merkle, note
from failover.evidence.witness import WitnessCore, create_app, request_body
from failover.evidence.witness_client import HttpWitness, WitnessConflict, WitnessError

pytestmark = pytest.mark.unit
ORIGIN = "tenir.invalid/test/ledger"


def leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(salt + bytes([i])) for i in range(n)]


def signed(site: keys.Signer, ls: list[bytes]) -> str:
    text = note.Checkpoint(ORIGIN, len(ls), merkle.root(ls)).text()
    return note.Note(text, (note.sign(text, site),)).render()


@pytest.mark.asyncio
async def test_cosigns_extensions_and_refuses_the_rest(tmp_path: Path) -> None:
    site = keys.generate("tenir/paris")
    wkey = keys.generate("tenir/witness", keys.COSIGNATURE_V1)
    state = tmp_path / "state.json"
    core = WitnessCore(wkey, {ORIGIN: [site.verifier]}, state)
    async with TestClient(TestServer(create_app(core), host="127.0.0.1")) as client:
        witness = HttpWitness(str(client.make_url("")))
        first = await witness.add_checkpoint(0, [], signed(site, leaves(5)))
        cosigned = note.Note(note.parse_note(signed(site, leaves(5))).text, tuple(first))
        note.verify(cosigned, [wkey.verifier])
        ls = leaves(9)
        await witness.add_checkpoint(5, merkle.consistency_proof(5, ls), signed(site, ls))
        with pytest.raises(WitnessConflict) as conflict:  # not the size it cosigned last
            await witness.add_checkpoint(5, merkle.consistency_proof(5, ls), signed(site, ls))
        assert conflict.value.known_size == 9
        fork = leaves(12, b"fork")
        with pytest.raises(WitnessError, match="422"):
            await witness.add_checkpoint(9, merkle.consistency_proof(9, fork),
                                         signed(site, fork))
        with pytest.raises(WitnessError, match="403"):
            await witness.add_checkpoint(9, [], signed(keys.generate("tenir/paris"), ls))
        body = request_body(0, [], signed(site, ls)).replace(ORIGIN, "other/log")
        resp = await client.post("/add-checkpoint", data=body)
        assert resp.status == 404
        resp = await client.post("/add-checkpoint", data="nonsense")
        assert resp.status == 400
    again = WitnessCore(wkey, {ORIGIN: [site.verifier]}, state)  # a restarted witness
    assert again.state[ORIGIN]["size"] == 9


def test_the_command_refuses_a_bad_configuration(tmp_path: Path) -> None:
    cfg = tmp_path / "witness.yml"
    cfg.write_text("listen_host: 127.0.0.1\nlisten_port: 0\nkey: /nonexistent.key\n"
                   f"state: {tmp_path}/s.json\nlogs: []\n")
    proc = subprocess.run([sys.executable, "-m", "failover.evidence.witness", "--config",
                           str(cfg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "/nonexistent.key" in proc.stderr
