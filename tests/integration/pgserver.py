"""A throwaway PostgreSQL 15 on 127.0.0.1, for the integration tests and the store benchmark.

``start_pg()`` runs initdb into a fresh directory under /tmp, starts ``postgres`` on a free
loopback port (TCP only, no Unix socket), waits until it accepts connections (bounded) and
returns a handle; ``PgServer.stop()`` stops that postmaster by its PID and removes the directory.
``halt(immediate=True)`` then ``start_again()`` stop it as a crash does (no checkpoint, every
connection cut) and start it on the same directory and port: a failover as its clients see it.
As root, both run as user ``postgres`` (setpriv); as another user, as that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("TENIR_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"  # the OS user (when root) and the database superuser


class PgServerError(RuntimeError):
    pass


@dataclass
class PgServer:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def dsn(self, dbname: str = "postgres") -> str:
        return psycopg.conninfo.make_conninfo(host="127.0.0.1", port=self.port, user=PG_USER,
                                              dbname=dbname, connect_timeout=5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def halt(self, timeout: float = 20.0, *, immediate: bool = False) -> None:
        """Fast shutdown (SIGINT) of our postmaster by its PID, SIGKILL after ``timeout``;
        ``immediate``: SIGQUIT, as a crash (recovery at the next start)."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGQUIT if immediate else signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def start_again(self, timeout: float = 60.0) -> None:
        """Start the halted postmaster on the same directory and port; wait until it answers."""
        if self.process.poll() is None:
            raise PgServerError("postgres is still running")
        again = _launch(self.root, self.root / "data", self.port, self.settings)
        self.process, self.log = again.process, again.log
        _wait_ready(self, timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """Halt the postmaster, then remove the directory."""
        try:
            self.halt(timeout)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _as_pg_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _preflight() -> None:
    missing = [str(PG_BIN / b) for b in ("initdb", "postgres") if not (PG_BIN / b).is_file()]
    if missing:
        raise PgServerError(f"PostgreSQL 15 binaries not found: {', '.join(missing)} "
                            "(install postgresql-15: `make install`, or set TENIR_PG_BIN)")
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            raise PgServerError("setpriv not found (util-linux): needed to run PostgreSQL "
                                "as user postgres")
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            raise PgServerError(f"user {PG_USER!r} does not exist (install postgresql-15)") \
                from None


def _settings(durable: bool) -> dict[str, str]:
    s = {"listen_addresses": "127.0.0.1", "unix_socket_directories": "",
         "max_connections": "100", "shared_buffers": "256MB", "max_wal_size": "4GB",
         "checkpoint_timeout": "30min", "logging_collector": "off"}
    if not durable:  # a throwaway test server: no need to survive a power cut
        s.update({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
    return s


def start_pg(*, durable: bool = False, timeout: float = 60.0,
             settings: dict[str, str] | None = None) -> PgServer:
    """Start a throwaway server. ``durable=False`` turns fsync off (tests); the benchmark keeps
    PostgreSQL's durable defaults. ``settings`` adds or overrides server settings (the loopback
    harness preloads pg_stat_statements). Raises PgServerError with the log tail on failure."""
    _preflight()
    root = Path(tempfile.mkdtemp(prefix="tenir-pg-"))
    try:
        os.chmod(root, 0o700)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            os.chown(root, pw.pw_uid, pw.pw_gid)
        data = root / "data"
        init = subprocess.run(
            [*_as_pg_user(), str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_USER,
             "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"],
            cwd=root, capture_output=True, text=True, timeout=120, check=False)
        if init.returncode != 0:
            raise PgServerError(f"initdb failed ({init.returncode}):\n{init.stdout}\n"
                                f"{init.stderr}")
        last = "never started"
        for _ in range(3):  # another process may take the free port before postgres binds it
            server = _launch(root, data, _free_port(), {**_settings(durable), **(settings or {})})
            try:
                _wait_ready(server, timeout)
                return server
            except PgServerError as e:
                last = str(e)
                server.halt()
                if "could not bind" not in server.log_tail(50) \
                        and "could not create listen socket" not in server.log_tail(50):
                    break
        raise PgServerError(last)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _launch(root: Path, data: Path, port: int, settings: dict[str, str]) -> PgServer:
    log = root / f"postgres-{port}-{time.monotonic_ns()}.log"
    args = [*_as_pg_user(), str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port)]
    for k, v in settings.items():
        args += ["-c", f"{k}={v}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=root, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return PgServer(root, port, proc, log, dict(settings))


def _wait_ready(server: PgServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise PgServerError(f"postgres exited with {server.process.returncode}:\n"
                                f"{server.log_tail()}")
        try:
            with psycopg.connect(server.dsn(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise PgServerError(f"postgres not ready after {timeout:.0f} s:\n"
                                f"{server.log_tail()}")
        time.sleep(0.1)

