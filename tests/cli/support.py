"""What the CLI tests drive the real ``tenir`` command against, with no lab: an alert node's API
app (``nodes.api.create_app``) on the in-memory store, served on 127.0.0.1 by a thread with its
own event loop; an inventory whose first alert node is that server; a campaign advanced batch by
batch on the store, as dispatchers would; and a tmux server that runs the CLI on a terminal of a
given width and reads its screen."""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from cluster import tls
from cluster.httpjson import request_json
from nodes.metrics import Metrics
from replication.store_api import Outcome
from tests.api.conftest import OPERATOR, SMS_STEP, make_app
from tests.fakes.memory_store import MemoryStore
from tests.tls_kit import TestPki

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_INVENTORY = REPO_ROOT / "inventories" / "lab" / "hosts.yml"
TENIR = Path(sys.executable).parent / "tenir"
# The test CA of the node's API (the lab's is made by ansible/pki.yml).
_PKI_DIR = Path(tempfile.mkdtemp(prefix="tenir-cli-pki-"))
atexit.register(shutil.rmtree, _PKI_DIR, True)
PKI = TestPki(_PKI_DIR)


class LoopThread:
    """An event loop in its own thread; ``call`` runs a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop",
                                       daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class NodeServer(LoopThread):
    """The node app on the in-memory store, on 127.0.0.1:``port``, on its own loop thread (the
    store is only touched from there)."""

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._ca_before: str | None = None
        self.nodes = itertools.cycle([("paris-node1", "paris"), ("marseille-node1", "marseille")])

    def __enter__(self) -> NodeServer:
        # Served over HTTPS like a node: the CLI (in process or not) trusts the test CA only.
        self._ca_before = os.environ.get("TENIR_CA_FILE")
        os.environ["TENIR_CA_FILE"] = str(PKI.pki.ca_cert_path)
        tls.configure(None)
        self.port = self.call(self._serve())
        return self

    def __exit__(self, *_: object) -> None:
        if self.runner is not None:
            self.call(self.runner.cleanup())
        self.close()
        if self._ca_before is None:
            os.environ.pop("TENIR_CA_FILE", None)
        else:
            os.environ["TENIR_CA_FILE"] = self._ca_before
        tls.configure(None)

    def app(self) -> web.Application:
        """The app served (a subclass adds its services)."""
        return make_app(self.store, Metrics())

    async def _serve(self) -> int:
        self.runner = web.AppRunner(self.app())
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0,
                           ssl_context=PKI.files("paris-node1").server_context())
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        return int(server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/api/v1"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        _, data = request_json(method, self.url + path, body, timeout=10.0, bearer=OPERATOR,
                               accept_status=(200, 201))
        return data

    def seed_scenario(self, name: str = "alerte") -> None:
        self.api("POST", "/scenarios", {"name": name, "priority": 2, "steps": [SMS_STEP]})

    def advance(self, campaign: int, batches: int, pause_s: float = 0.0) -> int:
        """Claim, deliver and finish ``batches`` batches of ``campaign`` (alternately from a
        paris and a marseille node), ``pause_s`` apart; returns how many were finished."""
        return self.call(self._advance(campaign, batches, pause_s))

    async def _advance(self, campaign: int, batches: int, pause_s: float) -> int:
        finished = 0
        for _ in range(batches):
            node, site = next(self.nodes)
            batch = await self.store.claim_batch(node, 30)
            if batch is None:
                break
            assert batch.campaign_id == campaign
            outcomes = [Outcome(recipient_id=r.id, channel="sms", carrier=f"sms-{site}",
                                reference=f"{campaign}:{r.id}:sms:1.0", state="delivered",
                                step=0, attempt=0, final=True, site=site)
                        for r in batch.recipients]
            await self.store.record_outcomes(batch.id, batch.epoch, batch.node, outcomes)
            await self.store.finish_batch(batch.id, batch.epoch, batch.node)
            finished += 1
            if pause_s:
                await asyncio.sleep(pause_s)
        return finished


def write_inventory(folder: Path, port: int = 9,
                    hosts: dict[str, dict[str, Any]] | None = None) -> Path:
    """The lab inventory with every host on a loopback address that answers nothing, except the
    first alert node (paris-node1) at 127.0.0.1:``port``; ``hosts`` adds host variables."""
    data = yaml.safe_load(LAB_INVENTORY.read_text(encoding="utf-8"))
    variables = data["all"]["vars"]
    variables.pop("tenir_lab_network")
    variables.pop("tenir_lab_bridge_address")
    variables["tenir_cluster_name"] = "tenir-clitest"
    variables.update(tenir_node_port=9, carrier_sim_control_port=9)  # discard: no answer
    sites = data["all"]["children"]["sites"]["children"]
    for i, (name, host) in enumerate((n, h) for s in sites.values()
                                     for n, h in s["hosts"].items()):
        host["ansible_host"] = f"127.0.0.{i + 100}"
        if name == "paris-node1":
            host.update(ansible_host="127.0.0.1", tenir_node_port=port)
        host.update((hosts or {}).get(name, {}))
    path = folder / "hosts.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def cli_env(token: str = OPERATOR, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return {**env, "TENIR_TOKEN": token, **extra}


class Tmux:
    """A private tmux server (its own socket, no configuration file) with one session on a
    ``width`` x ``height`` terminal."""

    _ids = itertools.count()

    def __init__(self, width: int, height: int = 20) -> None:
        self.socket = f"uxcli-{os.getpid()}-{next(self._ids)}"
        self.width = width
        self.height = height
        self.started = False

    def _tmux(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, "-f", os.devnull, *args],
                             capture_output=True, text=True, check=True, timeout=10)
        return out.stdout

    def run(self, argv: Sequence[str], env: dict[str, str]) -> None:
        """Run ``argv`` in the session; ``EXIT=<status>`` is printed when it ends."""
        shell = f"cd {shlex.quote(str(REPO_ROOT))} && {shlex.join(argv)}; echo EXIT=$?; " \
                "sleep 600"
        pairs = [arg for k, v in env.items() if k.startswith(("TENIR_", "PATH", "HOME"))
                 for arg in ("-e", f"{k}={v}")]
        self._tmux("new-session", "-d", "-s", "cli", "-x", str(self.width), "-y",
                   str(self.height), *pairs, shell)
        self.started = True

    def screen(self) -> list[str]:
        """The visible screen, a wrapped line joined back into one (``-J``), trailing blanks
        removed."""
        text = self._tmux("capture-pane", "-p", "-J", "-t", "cli")
        return [line.rstrip() for line in text.rstrip("\n").split("\n")]

    def wait_for(self, needle: str, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.screen()
            if any(needle in line for line in lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not on screen after {timeout} s:\n"
                                     + "\n".join(lines))
            time.sleep(0.1)

    def close(self) -> None:
        if self.started:
            path = self._tmux("display-message", "-p", "#{socket_path}").strip()
            subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                           check=False, timeout=10)
            Path(path).unlink(missing_ok=True)  # tmux leaves its socket file behind
