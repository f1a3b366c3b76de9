"""A whole tenir on 127.0.0.1, without the lab: a throwaway PostgreSQL 15 (pg_stat_statements
preloaded), one etcd, one carrier simulator per site (``python -m nodes.carriers.sim``) and N
alert nodes (``python -m nodes.main`` with a config rendered from the tenir_node role's
template), all on free loopback ports, each a process of its own that can be killed.

``code`` is the checkout whose nodes and simulators run (their working directory, and the
roles whose template renders their config): the benchmark runs the same harness on the
parent commit's checkout beside the current one. The nodes apply that checkout's migrations.

Use::

    with LoopbackCluster(nodes=4) as lc:
        cid = lc.launch(population=10_000)
        lc.wait_done(cid)

TLS as deployed: a throwaway cluster CA (``tests/tls_kit.TestPki``, the pki play's code) signs
a certificate per node, per simulator and for etcd; the nodes serve their API over HTTPS, reach
the simulators over TLS (SMPP over TLS, SMTP STARTTLS, voice and control over HTTPS) and etcd
with their client certificate. A checkout whose node template has no ``tls`` section (a
baseline from before TLS) runs in clear, as it was deployed then.

No synchronous replication and no HAProxy or Patroni here (the lab has them), and PostgreSQL
is reached in clear: figures are for the alert nodes, PostgreSQL and the carriers on one
machine. A PostgreSQL failover as the nodes see it: ``stop_pg()`` (a crash: every connection
cut) then ``start_pg_again()`` (same data, same port). Each node journals its outcomes under
``journal_dir``; ``restart_node`` starts a killed node again under the same name, as its
service manager would.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from cluster.render import render
from nodes.users import token_digest
from tests.coordination.servers import EtcdServer, free_port
from tests.integration.pgserver import PgServer, start_pg
from tests.tls_kit import TestPki

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
SITES = ("paris", "marseille")
APP_DB = "tenir"
SMPP_USER = "tenir"
SMPP_PASSWORD = "lbSecr3t"
ACK_KEY = "loopback-ack-key-0123456789abcdefghij"  # 32+ characters
VOICE_SECRET = "loopback-voice-callback-secret-0123456789"

DEMO = {"name": "demo", "priority": 2, "steps": [
    {"channel": "sms", "retries": 1, "retry_interval_s": 1.0,
     "templates": {"fr": "ALERTE {name} : confinez-vous, consignes sur alerte.invalid"}},
    {"channel": "email", "retries": 1, "retry_interval_s": 1.0,
     "templates": {"fr": "Alerte : confinez-vous. Consignes sur alerte.invalid"}},
]}


class HarnessError(RuntimeError):
    pass


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=30)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Node:
    proc: Proc
    site: str
    port: int
    config: Path
    scheme: str = "https"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"


@dataclass
class Sim:
    proc: Proc
    site: str
    ports: dict[str, int]
    scheme: str = "https"

    @property
    def control(self) -> str:
        return f"{self.scheme}://{HOST}:{self.ports['control']}"


def speaks_tls(code: Path) -> bool:
    """Whether ``code``'s node template has a ``tls`` section (every checkout since TLS)."""
    template = code / "ansible" / "roles" / "tenir_node" / "templates" / "node.yml.j2"
    return any(line.startswith("tls:") for line in template.read_text().splitlines())


def http_json(method: str, url: str, body: Any = None, token: str | None = None,
              timeout: float = 30.0, context: ssl.SSLContext | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        text = resp.read()
    return json.loads(text) if text else None


@dataclass
class LoopbackCluster:
    nodes: int = 4
    code: Path = REPO
    rate_per_s: float = 3000.0
    window: int = 64
    max_batches: int = 8
    lease_s: float = 15.0
    log_level: str = "WARNING"
    node_extra: dict[str, Any] = field(default_factory=dict)  # more keys of the node config
    python: str = sys.executable
    pg: PgServer | None = None
    etcd: EtcdServer | None = None
    sims: dict[str, Sim] = field(default_factory=dict)
    node_list: list[Node] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tenir-lb-")))
    pki: TestPki | None = None  # made at start when the checkout speaks TLS
    _client_ssl: ssl.SSLContext | None = field(default=None, repr=False)

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LoopbackCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.pg = start_pg(durable=True, settings={
            "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track": "all", "max_connections": "200"})
        with psycopg.connect(self.pg.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {APP_DB}")
        with psycopg.connect(self.pg.dsn(APP_DB), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        # The schema, as the deployment applies it (nodes only check it); the checkout's own
        # migrations, so that a baseline checkout gets its own schema.
        subprocess.run([self.python, "-c", "import asyncio, sys; from replication.migrate import "
                        "migrate; asyncio.run(migrate(sys.argv[1]))", self.dsn],
                       cwd=self.code, env={**os.environ, "PYTHONPATH": str(self.code)},
                       check=True, capture_output=True, timeout=120)
        if speaks_tls(self.code):
            self.pki = TestPki(self.root / "pki")
        self.etcd = EtcdServer(tls=self.pki.files("etcd") if self.pki else None)
        self.etcd.start()
        for site in SITES:
            self.sims[site] = self._start_sim(site)
        for i in range(self.nodes):
            self.node_list.append(self._start_node(f"{SITES[i % 2]}-node{i // 2 + 1}",
                                                   SITES[i % 2]))
        for node in self.node_list:
            self._wait_ready(node)
        self.seed()

    @property
    def journal_dir(self) -> Path:
        return self.root / "journal"

    def stop_pg(self) -> None:
        """PostgreSQL stops as a crashed primary does: every connection cut, no checkpoint."""
        assert self.pg is not None
        self.pg.halt(immediate=True)

    def start_pg_again(self) -> None:
        assert self.pg is not None
        self.pg.start_again()

    def restart_node(self, index: int) -> Node:
        """Start the (killed) node ``index`` again with the same name and configuration; does
        not wait for it (it waits for the store, flushes its journal, then joins)."""
        old = self.node_list[index]
        if old.proc.alive():
            raise HarnessError(f"{old.proc.name} is still running")
        lives = sum(1 for p in self.root.glob(f"{old.proc.name}*.log"))
        proc = self._spawn(f"{old.proc.name}.{lives}", [self.python, "-m", "nodes.main",
                                                        "--config", str(old.config)])
        proc.name = old.proc.name
        node = Node(proc, old.site, old.port, old.config)
        self.node_list[index] = node
        return node

    def stop(self) -> None:
        for node in self.node_list:
            node.proc.kill(signal.SIGTERM)
        for node in self.node_list:
            node.proc.kill()
        for sim in self.sims.values():
            sim.proc.kill(signal.SIGTERM)
        if self.etcd is not None:
            self.etcd.destroy()
            self.etcd = None
        if self.pg is not None:
            self.pg.stop()
            self.pg = None
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def dsn(self) -> str:
        assert self.pg is not None
        return self.pg.dsn(APP_DB)

    @property
    def scheme(self) -> str:
        return "https" if self.pki is not None else "http"

    def client_ssl(self) -> ssl.SSLContext | None:
        """A client context verifying the nodes and simulators by the harness's CA (None in
        clear); for aiohttp: ``TCPConnector(ssl=lc.client_ssl() or True)``."""
        if self.pki is not None and self._client_ssl is None:
            self._client_ssl = self.pki.ca_only().client_context()
        return self._client_ssl

    def _tls_dir(self, name: str) -> str:
        """``name``'s certificate, key and the CA under the names the node role gives them."""
        assert self.pki is not None
        files = self.pki.files(name)
        assert files.cert is not None and files.key is not None
        directory = self.root / "tls" / name
        directory.mkdir(parents=True, exist_ok=True)
        for source, target in ((files.ca, "ca.crt"), (files.cert, "host.crt"),
                               (files.key, "host.key")):
            shutil.copyfile(source, directory / target)
        (directory / "host.key").chmod(0o600)
        return str(directory)

    # -- processes ---------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(argv, cwd=self.code, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(self.code),
                                          **(env or {})})
        return Proc(name, popen, log)

    def _start_sim(self, site: str) -> Sim:
        tls: list[str] = []
        if self.pki is not None:
            files = self.pki.files(f"carriers-{site}")
            tls = ["--tls-cert", str(files.cert), "--tls-key", str(files.key),
                   "--tls-ca", str(files.ca)]
        proc = self._spawn(f"sim-{site}", [
            self.python, "-m", "nodes.carriers.sim", "--site", site, "--host", HOST,
            "--smpp-port", "0", "--smtp-port", "0", "--voice-port", "0", "--control-port", "0",
            "--dedup", "--receipt-delay-ms", "50", "--system-id", SMPP_USER, *tls],
            {"TENIR_SIM_SMPP_PASSWORD": SMPP_PASSWORD,
             "TENIR_SIM_VOICE_CALLBACK_SECRET": VOICE_SECRET})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in proc.log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("event") == "sim_ready":
                        return Sim(proc, site, {k: int(v) for k, v in event["ports"].items()},
                                   self.scheme)
            if not proc.alive():
                break
            time.sleep(0.05)
        raise HarnessError(f"simulator {site} not ready:\n{proc.log_tail()}")

    def node_config(self, name: str, site: str, port: int) -> str:
        sim = self.sims[site]
        assert self.etcd is not None
        text = render("tenir_node", "node.yml.j2", {
            "tenir_node_name": name, "tenir_node_site": site, "tenir_node_listen_host": HOST,
            "tenir_node_port": port, "tenir_node_address": HOST, "tenir_node_dsn": self.dsn,
            "tenir_node_users": [{"name": "loopback-operator", "role": "operator",
                                  "token_sha256": token_digest(self.token)}],
            # A baseline from before per-user tokens (its template has ``tokens``, in clear).
            "tenir_node_token_operator": self.token,
            "tenir_node_token_oncall": secrets.token_hex(16),
            "tenir_node_token_auditor": secrets.token_hex(16),
            "tenir_node_ack_keys": [{"id": "lb", "secret": ACK_KEY}],
            "tenir_node_voice_callback_secrets": [VOICE_SECRET],
            "tenir_node_carriers_host": HOST, "tenir_node_smpp_port": sim.ports["smpp"],
            "tenir_node_smpp_system_id": SMPP_USER, "tenir_node_smpp_password": SMPP_PASSWORD,
            "tenir_node_smtp_port": sim.ports["smtp"], "tenir_node_voice_port": sim.ports["voice"],
            "tenir_node_carrier_rate_per_s": self.rate_per_s,
            "tenir_node_carrier_window": self.window,
            "tenir_node_lease_s": self.lease_s, "tenir_node_max_batches": self.max_batches,
            "tenir_node_journal_dir": str(self.journal_dir),
            "tenir_node_log_level": self.log_level,
            "tenir_node_coordination_backend": "etcd",
            "tenir_node_coordination_endpoints": [self.etcd.endpoint],
            "tenir_node_coordination_namespace": "/tenir/loopback/",
            "tenir_node_membership_ttl": 5, "tenir_node_coordination_retry_timeout": 1.5,
            "tenir_node_fencing_safety": 2, "tenir_node_watchdog_cycle_s": 0.5,
            "tenir_node_patroni_urls": [],
            **({"tenir_node_tls_dir": self._tls_dir(name)} if self.pki is not None else {}),
        }, roles_dir=self.code / "ansible" / "roles")
        for key, value in self.node_extra.items():
            text += f"{key}: {json.dumps(value)}\n"
        return text

    def _start_node(self, name: str, site: str) -> Node:
        port = free_port()
        config = self.root / f"{name}.yml"
        config.write_text(self.node_config(name, site, port))
        config.chmod(0o600)
        proc = self._spawn(name, [self.python, "-m", "nodes.main", "--config", str(config)])
        return Node(proc, site, port, config, self.scheme)

    def _wait_ready(self, node: Node, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not node.proc.alive():
                break
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                http_json("GET", f"{node.url}/readyz", timeout=2, context=self.client_ssl())
                return
            time.sleep(0.1)
        raise HarnessError(f"node {node.proc.name} not ready:\n{node.proc.log_tail()}")

    # -- the API and the simulators ----------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, node: int = 0) -> Any:
        return http_json(method, f"{self.node_list[node].url}/api/v1{path}", body, self.token,
                         context=self.client_ssl())

    def _control(self, method: str, sim: Sim, path: str, body: Any = None) -> Any:
        return http_json(method, f"{sim.control}{path}", body, context=self.client_ssl())

    def seed(self) -> None:
        existing = {s["name"] for s in self.api("GET", "/scenarios")["items"]}
        if "demo" not in existing:
            self.api("POST", "/scenarios", DEMO)

    def launch(self, population: int, node: int = 0, scenario: str = "demo") -> int:
        return int(self.api("POST", "/campaigns", {"scenario": scenario,
                                                   "population": population}, node)["id"])

    def reset_sims(self) -> dict[str, int]:
        """Clear the simulators' records; returns each one's last submission sequence number."""
        out = {}
        for site, sim in self.sims.items():
            self._control("POST", sim, "/reset", {})
            out[site] = int(self._control("GET", sim, "/submissions?after=0&limit=1")
                            ["last"])
        return out

    def first_submission(self, after: dict[str, int]) -> float | None:
        """The wall time of the earliest submission after the cursors, or None yet."""
        times = []
        for site, sim in self.sims.items():
            page = self._control("GET", sim, f"/submissions?after={after[site]}&limit=1")
            if page["items"]:
                times.append(float(page["items"][0]["at"]))
        return min(times) if times else None

    def submissions(self, after: dict[str, int] | None = None) -> list[dict[str, Any]]:
        """Every submission the simulators logged after the cursors (all without), each as the
        simulator says it (site, channel, reference, at: its wall time, ...)."""
        out: list[dict[str, Any]] = []
        for site, sim in self.sims.items():
            cursor = (after or {}).get(site, 0)
            while True:
                page = self._control("GET", sim, f"/submissions?after={cursor}&limit=10000")
                if page["lost"]:
                    raise HarnessError(f"{site}: {page['lost']} submissions left the ring")
                out.extend({"site": site, **s} for s in page["items"])
                cursor = int(page["next"])
                if not page["items"] or cursor >= int(page["last"]):
                    break
        return out

    def submitted_references(self) -> dict[str, list[str]]:
        """channel|reference -> the sites that received it, once per submission."""
        out: dict[str, list[str]] = {}
        for s in self.submissions():
            out.setdefault(f"{s['channel']}|{s['reference']}", []).append(s["site"])
        return out

    # -- the store, read directly ------------------------------------------------------------
    def campaign_row(self, campaign: int) -> dict[str, Any]:
        with psycopg.connect(self.dsn) as conn:
            cur = conn.execute(
                "SELECT state, extract(epoch FROM launched_at)::float8,"
                " extract(epoch FROM completed_at)::float8 FROM campaigns WHERE id = %s",
                (campaign,))
            row = cur.fetchone()
        if row is None:
            raise HarnessError(f"campaign {campaign} not found")
        return {"state": row[0], "launched_at": row[1], "completed_at": row[2]}

    def wait_done(self, campaign: int, timeout: float, poll_s: float = 0.5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            row = self.campaign_row(campaign)
            if row["completed_at"] is not None or time.monotonic() > deadline:
                return row
            for node in self.node_list:
                if not node.proc.alive() and node.proc.popen.returncode not in (None, -9):
                    raise HarnessError(f"node {node.proc.name} exited "
                                       f"{node.proc.popen.returncode}:\n{node.proc.log_tail()}")
            time.sleep(poll_s)

    def components(self) -> dict[str, list[int]]:
        """component -> the root PIDs of its process trees (PostgreSQL: the postmaster)."""
        assert self.pg is not None and self.etcd is not None and self.etcd.process is not None
        return {"alert nodes": [n.proc.pid for n in self.node_list if n.proc.alive()],
                "postgresql": [self.pg.pid],
                "carrier simulators": [s.proc.pid for s in self.sims.values()],
                "etcd": [self.etcd.process.pid]}


@contextlib.contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """A temporary git worktree of ``commit`` (the parent, to measure beside), removed after."""
    path = Path(tempfile.mkdtemp(prefix="tenir-base-"))
    path.rmdir()
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                       check=False, capture_output=True)
