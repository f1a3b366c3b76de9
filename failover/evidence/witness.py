"""The witness cosigner (c2sp.org/tlog-witness ``add-checkpoint``), run at the witness site:
``python -m failover.evidence.witness --config witness.yml``.

For each log it knows (origin -> the site keys that may sign its checkpoints) it keeps the
latest checkpoint it cosigned, in a JSON state file written atomically before it answers. A
checkpoint is cosigned only if it is signed by a known key of its origin and a consistency
proof shows it extends that latest checkpoint: the log cannot show two histories without the
witness refusing one. Answers as the specification says: 404 unknown origin, 403 no trusted
signature, 400 malformed or old size larger than the new, 409 (body: the size it knows,
``text/x.tlog.size``) old size not the one it cosigned or same size with another root, 422 the
proof does not verify, 200 with the cosignature lines.

Configuration (YAML): ``listen_host``, ``listen_port``, ``key`` (the witness's cosigner key
file, type 0x04, from ``tenir evidence keygen --witness``), ``state`` (the state file) and
``logs``: a list of ``{origin: ..., keys: [verifier key files]}``, and optionally ``tls``:
``{ca, cert, key}``, to serve over HTTPS.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from cluster.tls import TlsFiles
from failover.evidence import merkle, note
from failover.evidence.keys import COSIGNATURE_V1, KeyFileError, Signer, Verifier, load_signer
from failover.evidence.keys import load_verifier as load_vkey

log = logging.getLogger("tenir.witness")
MAX_BODY = 64 * 1024
MAX_PROOF = 63


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    content_type: str = "text/plain"


class WitnessCore:
    """The checks and the state, without HTTP (the server below and in-process callers)."""

    def __init__(self, signer: Signer, logs: dict[str, list[Verifier]], state: Path,
                 clock: Any = time.time) -> None:
        if signer.key_type != COSIGNATURE_V1:
            raise KeyFileError(f"witness key {signer.name} is not a cosigner key (type 0x04)")
        self.signer, self.logs, self.state_path, self.clock = signer, logs, state, clock
        self._lock = asyncio.Lock()
        self.state: dict[str, dict[str, Any]] = {}
        if state.exists():
            self.state = json.loads(state.read_text(encoding="utf-8"))

    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2), encoding="utf-8")
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        tmp.replace(self.state_path)

    async def add_checkpoint(self, body: str) -> Answer:
        try:
            old, proof, signed = _parse_request(body)
            parsed = note.parse_note(signed)
            cp = note.parse_checkpoint(parsed.text)
        except (ValueError, note.NoteError) as exc:
            return Answer(400, f"malformed request: {exc}\n")
        keys = self.logs.get(cp.origin)
        if keys is None:
            return Answer(404, f"unknown log origin {cp.origin}\n")
        try:
            note.verify(parsed, keys)
        except note.NoteError as exc:
            return Answer(403, f"{exc}\n")
        if old > cp.size:
            return Answer(400, f"old size {old} is larger than the checkpoint's {cp.size}\n")
        async with self._lock:  # check and persist atomically (the spec's rollback race)
            known = self.state.get(cp.origin, {"size": 0, "root": ""})
            if old != known["size"]:
                return Answer(409, f"{known['size']}\n", "text/x.tlog.size")
            known_root = base64.b64decode(known["root"]) if known["root"] else merkle.EMPTY_ROOT
            if old == cp.size and known_root != cp.root:
                return Answer(409, f"{known['size']}\n", "text/x.tlog.size")
            try:
                merkle.verify_consistency(old, cp.size, known_root, cp.root, proof)
            except merkle.ProofError as exc:
                log.warning("refused %s size %d: %s", cp.origin, cp.size, exc)
                return Answer(422, f"consistency proof from {old} does not verify: {exc}\n")
            line = note.cosign(parsed.text, self.signer, int(self.clock()))
            self.state[cp.origin] = {"size": cp.size,
                                     "root": base64.b64encode(cp.root).decode(),
                                     "note": parsed.text}
            self._save()
        log.info("cosigned %s size %d", cp.origin, cp.size)
        return Answer(200, line.render())


def _parse_request(body: str) -> tuple[int, list[bytes], str]:
    head, sep, rest = body.partition("\n\n")
    if not sep:
        raise ValueError("no empty line after the proof")
    lines = head.split("\n")
    if not lines[0].startswith("old ") or not lines[0][4:].isdigit():
        raise ValueError("the first line must be 'old <size>'")
    if len(lines) - 1 > MAX_PROOF:
        raise ValueError(f"more than {MAX_PROOF} proof lines")
    try:
        proof = [base64.b64decode(x, validate=True) for x in lines[1:]]
    except binascii.Error as exc:
        raise ValueError("a proof line is not base64") from exc
    return int(lines[0][4:]), proof, rest


def request_body(old: int, proof: list[bytes], signed_note: str) -> str:
    return (f"old {old}\n" + "".join(base64.b64encode(p).decode() + "\n" for p in proof)
            + "\n" + signed_note)


def create_app(core: WitnessCore) -> web.Application:
    async def add(request: web.Request) -> web.Response:
        body = await request.text()
        answer = await core.add_checkpoint(body)
        return web.Response(status=answer.status, text=answer.body,
                            content_type=answer.content_type)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/add-checkpoint", add)
    return app


@dataclass(frozen=True)
class WitnessConfig:
    listen_host: str
    listen_port: int
    key: Path
    state: Path
    logs: dict[str, list[Path]]
    tls: TlsFiles | None = None  # served over HTTPS with this certificate


def load_config(path: Path) -> WitnessConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a mapping")
    for key, kind in (("listen_host", str), ("listen_port", int), ("key", str), ("state", str),
                      ("logs", list)):
        if not isinstance(data.get(key), kind):
            raise ValueError(f"{path}: {key}: must be {kind.__name__}")
    logs: dict[str, list[Path]] = {}
    for i, item in enumerate(data["logs"]):
        if not isinstance(item, dict) or not isinstance(item.get("origin"), str) \
                or not isinstance(item.get("keys"), list) or not item["keys"]:
            raise ValueError(f"{path}: logs[{i}]: needs an origin and a list of key files")
        logs[item["origin"]] = [Path(k) for k in item["keys"]]
    tls = data.get("tls")
    if tls is not None and (not isinstance(tls, dict) or set(tls) != {"ca", "cert", "key"}
                            or not all(isinstance(v, str) for v in tls.values())):
        raise ValueError(f"{path}: tls: must be a mapping {{ca, cert, key}} of file paths")
    return WitnessConfig(data["listen_host"], data["listen_port"], Path(data["key"]),
                         Path(data["state"]), logs,
                         TlsFiles(Path(tls["ca"]), Path(tls["cert"]), Path(tls["key"]))
                         if tls else None)


def build_core(cfg: WitnessConfig) -> WitnessCore:
    logs = {origin: [load_vkey(k) for k in files] for origin, files in cfg.logs.items()}
    return WitnessCore(load_signer(cfg.key), logs, cfg.state)


async def serve(cfg: WitnessConfig, stop: asyncio.Event) -> None:
    runner = web.AppRunner(create_app(build_core(cfg)), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, cfg.listen_host, cfg.listen_port, ssl_context=(
            cfg.tls.server_context() if cfg.tls is not None else None)).start()
        log.info("witness serving on %s:%d", cfg.listen_host, cfg.listen_port)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    import signal

    parser = argparse.ArgumentParser(prog="tenir-witness", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        build_core(cfg)  # keys readable, state parseable: fail before listening
    except (ValueError, KeyFileError) as exc:
        print(f"tenir-witness: invalid configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format='{"level":"%(levelname)s","msg":"%(message)s"}')

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(cfg, stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
