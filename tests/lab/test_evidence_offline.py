"""Issue 11 on what the lab left: the evidence bundle exported from the etcd lab after the demo
and the drills (fixture ``evidence_bundle``) is verified on a copy, with no lab running, by
``tenir evidence verify`` alone: no cluster, no database. Changing one byte of one entry makes
it fail and name that entry (the other kinds of tampering are ``tests/unit/test_evidence_*``).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cluster.lab import netns
from failover.evidence.bundle import entry_from_json
from tests.lab.support import REPO, LabHandle

pytestmark = [pytest.mark.lab, pytest.mark.after_lab]
TENIR = str(REPO / ".venv" / "bin" / "tenir")


def _verify(bundle: Path) -> subprocess.CompletedProcess[str]:
    # no -i: the CLI reads no inventory and reaches no cluster for `evidence verify`
    return subprocess.run([TENIR, "evidence", "verify", str(bundle), "--json"],
                          capture_output=True, text=True, timeout=300, cwd="/")


def test_the_bundle_verifies_offline_on_a_copy_and_names_a_changed_entry(
        lab_env: LabHandle, evidence_bundle: Path, tmp_path: Path) -> None:
    if netns.list_namespaces():  # run alone: the lab is still up
        lab_env.lab.down()
    assert netns.list_namespaces() == [], "a lab still runs"
    copy = tmp_path / "copy"
    shutil.copytree(evidence_bundle, copy)
    done = _verify(copy)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    print(f"verified offline: {json.dumps(result)[:300]}")

    lines = (copy / "entries.jsonl").read_text().splitlines()
    items = [json.loads(line) for line in lines]
    seq, item = next((i, item) for i, item in enumerate(items)
                     if (e := entry_from_json(item)) is not None and e.kind == "drill.record")
    payload = bytearray(base64.b64decode(item["payload"]))
    payload[len(payload) // 2] ^= 0x01  # one bit of one byte
    item["payload"] = base64.b64encode(bytes(payload)).decode()
    lines[seq] = json.dumps(item)
    (copy / "entries.jsonl").write_text("\n".join(lines) + "\n")
    done = _verify(copy)
    assert done.returncode != 0
    text = done.stdout + done.stderr
    assert f"entry {item['seq']}: its content does not match its hash" in text, text[-2000:]
