"""The simulator as an operator runs it: ``python -m nodes.carriers.sim`` in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from nodes.carriers.base import Message
from nodes.carriers.smpp import SmppAdapter
from nodes.carriers.smtp import SmtpAdapter
from nodes.carriers.voice import VoiceAdapter
from tests.carriers.support import HOST, SMPP_PASSWORD, SMPP_USER, Collector, eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

REPO_ROOT = Path(__file__).resolve().parents[2]
PHONE = "+33612345678"


class SimProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.ready: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        assert proc.stderr is not None
        self._pump = asyncio.create_task(self._read(proc.stderr))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "sim_ready" and not self.ready.done():
                    self.ready.set_result(event["ports"])
        if not self.ready.done():
            self.ready.set_exception(RuntimeError("simulator exited before ready:\n"
                                                  + "\n".join(self.lines)))

    async def wait_exit(self, within: float) -> int:
        rc = await asyncio.wait_for(self.proc.wait(), within)
        await asyncio.wait_for(self._pump, within)
        return rc

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.strip()]


@pytest_asyncio.fixture
async def sim_process() -> AsyncIterator[SimProcess]:
    env = {**os.environ, "TENIR_SIM_SMPP_PASSWORD": SMPP_PASSWORD}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nodes.carriers.sim", "--site", "marseille", "--host", HOST,
        "--smpp-port", "0", "--smtp-port", "0", "--voice-port", "0", "--control-port", "0",
        "--dedup", "--receipt-delay-ms", "10", "--system-id", SMPP_USER, "--log-level", "DEBUG",
        cwd=REPO_ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    sim = SimProcess(proc)
    try:
        yield sim
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        sim._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sim._pump


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_simulator_exits_cleanly_on_signal(
    sim_process: SimProcess, collector: Collector, signum: signal.Signals,
) -> None:
    ports = await asyncio.wait_for(sim_process.ready, 10)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{HOST}:{ports['control']}/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["site"] == "marseille"

        adapter = SmppAdapter(host=HOST, port=ports["smpp"], system_id=SMPP_USER,
                              password=SMPP_PASSWORD, timeout_s=10.0, reconnect_min_s=5.0)
        smtp = SmtpAdapter(host=HOST, port=ports["smtp"], sender="x@tenir.test", timeout_s=10.0)
        voice = VoiceAdapter(base_url=f"http://{HOST}:{ports['voice']}", timeout_s=10.0,
                             callback_url=f"http://{HOST}:9/unused")
        for a in (adapter, smtp, voice):
            await a.start(collector.on_receipt, collector.on_ack)
        try:
            for _ in range(2):
                result = await adapter.send(Message("3:1:sms:0", "sms", PHONE, "Évacuez",
                                                    ack="reply"))
                assert result.accepted
            await eventually(lambda: len(collector.acks) == 1, what="the reply")
            async with http.get(f"http://{HOST}:{ports['control']}/report") as resp:
                report = await resp.json()
            assert report["dedup"] is True
            assert report["sms"]["duplicates"] == 1 and report["sms"]["delivered"] == 2

            # Leave a request hanging on every channel, then stop the simulator under them.
            async with http.post(f"http://{HOST}:{ports['control']}/control",
                                 json={"channel": "all", "mode": "timeout"}) as resp:
                assert resp.status == 200
            hanging = [
                asyncio.create_task(adapter.send(Message("3:2:sms:0", "sms", PHONE, "x"))),
                asyncio.create_task(smtp.send(Message("3:2:email:0", "email", "a@b.test", "x"))),
                asyncio.create_task(voice.send(Message("3:2:voice:0", "voice", PHONE, "x"))),
            ]
            await asyncio.sleep(0.3)
            assert not any(task.done() for task in hanging)

            started = time.monotonic()
            sim_process.proc.send_signal(signum)
            assert await sim_process.wait_exit(5.0) == 0
            results = await asyncio.wait_for(asyncio.gather(*hanging), 5.0)
            # Answered by the shutdown, long before the adapters' own 10 s timeouts.
            assert time.monotonic() - started < 5.0
            assert all(not r.accepted and r.retryable for r in results), results
            # The simulator unbound the session before exiting.
            await eventually(lambda: not adapter.bound, within=2.0, what="the unbind")
        finally:
            await adapter.close()
            await smtp.close()
            await voice.close()

    events = sim_process.events()  # every line is JSON
    names = [e.get("event") for e in events]
    assert "sim_signal" in names and names[-1] == "sim_stopped"
    assert not [e for e in events if e["level"] in ("error", "critical")]
    log_text = "\n".join(sim_process.lines)
    assert PHONE[1:] not in log_text and PHONE[-9:] not in log_text
    assert "+*********78" in log_text
    assert SMPP_PASSWORD not in log_text


async def test_simulator_refuses_bad_arguments() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nodes.carriers.sim", "--site", "x", "--smpp-port", "70000",
        cwd=REPO_ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 2
    assert b"smpp_port" in err
