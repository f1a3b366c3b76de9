"""Throwaway etcd and ZooKeeper servers on 127.0.0.1, and a TCP proxy to cut one client off.

Each server runs from a fresh temporary directory on free loopback ports, is waited for
(bounded) until it answers, can be frozen (SIGSTOP) and thawed (SIGCONT), stopped and started
again on the same ports and data directory; ``destroy()`` stops it by its PID and removes the
directory. A missing binary is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from cluster.tls import TlsFiles

ETCD_BIN = Path(os.environ.get("TENIR_ETCD_BIN", "/usr/bin/etcd"))
JAVA_BIN = Path(os.environ.get("TENIR_JAVA_BIN", shutil.which("java") or "/usr/bin/java"))
ZK_JAR = Path("/usr/share/java/zookeeper.jar")  # its manifest's Class-Path names the deps
ZK_LOG_JAR = Path("/usr/share/java/slf4j-simple.jar")  # optional: server log to stderr
ZK_NETTY_CODEC = Path("/usr/share/java/netty-codec.jar")  # Netty serves ZooKeeper's TLS
HOST = "127.0.0.1"
START_TIMEOUT = 30.0


S = TypeVar("S", bound="Server")


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """One server process in its own temporary directory."""

    name = "server"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"tenir-{self.name}-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.root / "server.log"
        self.frozen = False

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.root)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready():
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.process.returncode}:\n"
                                  f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"{self.name} not ready within {START_TIMEOUT}s on "
                                  f"{self.endpoint}:\n{self.log_tail()}")
            time.sleep(0.05)

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.process is not None and self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop our process by its PID (SIGKILL by default: a crash; data is on disk)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        self.thaw()
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def ensure_running(self) -> None:
        self.thaw()
        if self.process is None or self.process.poll() is not None:
            self.start()

    def destroy(self) -> None:
        self.stop(signal.SIGTERM)
        shutil.rmtree(self.root, ignore_errors=True)


class EtcdServer(Server):
    """etcd on loopback; with ``tls`` (a server certificate for 127.0.0.1 and its CA), clients
    and peers over TLS with client certificates required, as the etcd role configures it."""

    name = "etcd"

    def __init__(self, tls: TlsFiles | None = None) -> None:
        if not ETCD_BIN.exists():
            raise ServerError(f"{ETCD_BIN} not found: install the Debian package etcd-server")
        super().__init__()
        self.peer_port = free_port()
        self.tls = tls

    def command(self) -> list[str]:
        scheme = "https" if self.tls else "http"
        peer = f"{scheme}://{HOST}:{self.peer_port}"
        client = f"{scheme}://{self.endpoint}"
        argv = [str(ETCD_BIN), "--name", "t", "--data-dir", str(self.root / "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"t={peer}", "--log-level", "warn"]
        if self.tls is not None:
            files = [str(self.tls.cert), str(self.tls.key), str(self.tls.ca)]
            argv += ["--cert-file", files[0], "--key-file", files[1], "--trusted-ca-file",
                     files[2], "--client-cert-auth", "--peer-cert-file", files[0],
                     "--peer-key-file", files[1], "--peer-trusted-ca-file", files[2],
                     "--peer-client-cert-auth"]
        return argv

    def ready(self) -> bool:
        try:  # the v2/v3 gateway's health endpoint
            with socket.create_connection((HOST, self.port), timeout=1) as raw:
                s = (self.tls.client_context().wrap_socket(raw, server_hostname=HOST)
                     if self.tls else raw)
                s.sendall(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
                return b'"health":"true"' in s.recv(4096)
        except OSError:
            return False


class ZooKeeperServer(Server):
    """ZooKeeper on loopback; with ``tls`` (a server certificate for 127.0.0.1 and its CA), its
    client port is TLS only with client certificates required, x509 identities on, as the
    zookeeper role configures it."""

    name = "zookeeper"

    def __init__(self, tls: TlsFiles | None = None) -> None:
        for path, package in ((JAVA_BIN, "openjdk-17-jre-headless"), (ZK_JAR, "zookeeper")):
            if not path.exists():
                raise ServerError(f"{path} not found: install the Debian package {package}")
        super().__init__()
        self.tls = tls
        (self.root / "data").mkdir()
        # tickTime 500 ms: sessions of 1 s .. 60 s can be negotiated, expiry is ~0.5 s precise
        config = (f"tickTime=500\ndataDir={self.root / 'data'}\n"
                  "minSessionTimeout=1000\nmaxSessionTimeout=60000\n"
                  "admin.enableServer=false\n4lw.commands.whitelist=*\n")
        if tls is None:
            config += f"clientPort={self.port}\nclientPortAddress={HOST}\n"
        else:
            assert tls.cert is not None and tls.key is not None
            pem = self.root / "host.pem"
            pem.write_bytes(tls.key.read_bytes() + tls.cert.read_bytes())
            config += (f"secureClientPort={self.port}\nsecureClientPortAddress={HOST}\n"
                       "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n"
                       f"ssl.keyStore.location={pem}\nssl.keyStore.type=PEM\n"
                       f"ssl.trustStore.location={tls.ca}\nssl.trustStore.type=PEM\n"
                       "ssl.clientAuth=need\nauthProvider.x509="
                       "org.apache.zookeeper.server.auth.X509AuthenticationProvider\n")
        (self.root / "zoo.cfg").write_text(config)

    def command(self) -> list[str]:
        classpath = [str(ZK_JAR), str(ZK_NETTY_CODEC)] + (
            [str(ZK_LOG_JAR)] if ZK_LOG_JAR.exists() else [])
        return [str(JAVA_BIN), "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Dzookeeper.jmx.log4j.disable=true", "-cp", ":".join(classpath),
                "org.apache.zookeeper.server.ZooKeeperServerMain", str(self.root / "zoo.cfg")]

    def ready(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as raw:
                s = (self.tls.client_context().wrap_socket(raw, server_hostname=HOST)
                     if self.tls else raw)
                s.sendall(b"ruok")
                return s.recv(16) == b"imok"
        except OSError:
            return False


@contextlib.contextmanager
def running(server: S) -> Iterator[S]:
    """``server`` started, destroyed (stopped by its PID, its directory removed) after."""
    try:
        server.start()
        yield server
    finally:
        server.destroy()


class Proxy:
    """A TCP relay 127.0.0.1:port -> target, to cut one client off from the server: ``cut()``
    drops its connections and refuses new ones (the server sees the client vanish, without a
    goodbye); ``heal()`` accepts again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    async def heal(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, HOST, self.port)

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def close(self) -> None:
        await self.cut()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            self._tasks.discard(task)
            return
        self._writers.add(up_writer)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pipe(reader, up_writer))
                group.create_task(self._pipe(up_reader, writer))
        except* (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                w.transport.abort()
                self._writers.discard(w)
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.transport.abort()  # one side ended: end both, like a dead peer's RST
