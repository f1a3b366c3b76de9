"""HAProxy's admin socket (TCP or UNIX): ``show stat`` and server state changes.

The runtime API answers one command per connection in non-interactive mode; ``show stat`` is CSV
whose header line starts with ``# ``.
"""

from __future__ import annotations

import csv
import io
import socket
from dataclasses import dataclass


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


class HAProxyAdmin:
    def __init__(self, address: str | None = None, port: int = 9999, unix_path: str | None = None,
                 timeout: float = 2.0) -> None:
        if (address is None) == (unix_path is None):
            raise ValueError("give either a TCP address or a UNIX socket path")
        self.address = address
        self.port = port
        self.unix_path = unix_path
        self.timeout = timeout

    def command(self, line: str) -> str:
        try:
            if self.unix_path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(self.unix_path)
            else:
                sock = socket.create_connection((str(self.address), self.port), self.timeout)
        except OSError as exc:
            where = self.unix_path or f"{self.address}:{self.port}"
            raise HAProxyError(f"HAProxy admin socket {where}: {exc}") from exc
        with sock:
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def servers(self, proxy: str | None = None) -> list[ServerState]:
        text = self.command("show stat")
        if not text.startswith("# "):
            raise HAProxyError(f"unexpected answer to 'show stat': {text[:120]!r}")
        rows = csv.DictReader(io.StringIO(text[2:]))
        out = []
        for row in rows:
            if row.get("svname") in ("FRONTEND", "BACKEND", None):
                continue
            if proxy is not None and row.get("pxname") != proxy:
                continue
            out.append(ServerState(
                proxy=str(row["pxname"]), server=str(row["svname"]), status=str(row["status"]),
                current_sessions=int(row.get("scur") or 0),
            ))
        return out

    def set_state(self, proxy: str, server: str, state: str) -> None:
        if state not in ("ready", "drain", "maint"):
            raise ValueError(f"unknown server state {state!r}")
        answer = self.command(f"set server {proxy}/{server} state {state}").strip()
        if answer:
            raise HAProxyError(f"set server {proxy}/{server} state {state}: {answer}")
