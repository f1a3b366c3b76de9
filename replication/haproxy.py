"""HAProxy's state: ``show stat`` CSV read from its read-only statistics page over HTTPS (what
``tenir status`` and the switchover read, from anywhere), and its runtime API, a UNIX socket on
the HAProxy machine only (``level admin``: never on the network).

The statistics page (``/stats;csv``) and the runtime API's ``show stat`` give the same CSV, whose
header line starts with ``# ``.
"""

from __future__ import annotations

import csv
import io
import socket
from dataclasses import dataclass

from cluster.httpjson import HttpError, request_json


class HAProxyError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerState:
    proxy: str
    server: str
    status: str  # UP, DOWN, MAINT, DRAIN, "UP 1/2", ...
    current_sessions: int

    @property
    def up(self) -> bool:
        return self.status.startswith("UP")


def parse_stat_csv(text: str, proxy: str | None = None) -> list[ServerState]:
    """The servers of ``show stat`` CSV (frontends and backends left out), of ``proxy`` only
    when given."""
    if not text.startswith("# "):
        raise HAProxyError(f"unexpected answer to 'show stat': {text[:120]!r}")
    out = []
    for row in csv.DictReader(io.StringIO(text[2:])):
        if row.get("svname") in ("FRONTEND", "BACKEND", None):
            continue
        if proxy is not None and row.get("pxname") != proxy:
            continue
        out.append(ServerState(proxy=str(row["pxname"]), server=str(row["svname"]),
                               status=str(row["status"]),
                               current_sessions=int(row.get("scur") or 0)))
    return out


class HAProxyStats:
    """HAProxy's statistics page over HTTPS (``stats auth``; GET only): verified by the
    cluster's CA like every https URL of the CLI (``cluster/tls.py``)."""

    def __init__(self, url: str, auth: tuple[str, str], timeout: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.auth = auth
        self.timeout = timeout

    def servers(self, proxy: str | None = None) -> list[ServerState]:
        try:
            _, text = request_json("GET", f"{self.url};csv;norefresh", timeout=self.timeout,
                                   auth=self.auth)
        except HttpError as exc:
            raise HAProxyError(f"HAProxy statistics {self.url}: {exc.status or ''} "
                               f"{exc.reason}".replace("  ", " ")) from exc
        return parse_stat_csv(str(text), proxy)


class HAProxyAdmin:
    """HAProxy's runtime API on its UNIX socket (on the HAProxy machine, as root or haproxy)."""

    def __init__(self, unix_path: str, timeout: float = 2.0) -> None:
        self.unix_path = unix_path
        self.timeout = timeout

    def command(self, line: str) -> str:
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except OSError as exc:
            raise HAProxyError(f"HAProxy admin socket {self.unix_path}: {exc}") from exc
        with sock:
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def servers(self, proxy: str | None = None) -> list[ServerState]:
        return parse_stat_csv(self.command("show stat"), proxy)

    def set_state(self, proxy: str, server: str, state: str) -> None:
        if state not in ("ready", "drain", "maint"):
            raise ValueError(f"unknown server state {state!r}")
        answer = self.command(f"set server {proxy}/{server} state {state}").strip()
        if answer:
            raise HAProxyError(f"set server {proxy}/{server} state {state}: {answer}")
