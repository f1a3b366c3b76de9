"""ZooKeeper health and leadership through its four-letter words on the client port (``srvr``
must be in ``4lw.commands.whitelist``; the zookeeper role allows it)."""

from __future__ import annotations

import socket
import ssl

from cluster.member_probe import MemberHealth

NOT_SERVING = "not currently serving requests"


def four_letter_word(address: str, port: int, word: str, timeout: float = 1.5,
                     tls: ssl.SSLContext | None = None) -> str:
    """Send one four-letter word and read the whole answer (the server closes after it); over
    TLS with ``tls`` (the client port of a TLS ensemble, which wants our certificate)."""
    chunks: list[bytes] = []
    with socket.create_connection((address, port), timeout=timeout) as raw:
        sock = tls.wrap_socket(raw, server_hostname=address) if tls is not None else raw
        sock.sendall(word.encode("ascii"))
        while True:
            data = sock.recv(4096)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def parse_srvr(text: str) -> tuple[bool, str | None, str | None]:
    """(serving, mode, problem) from a ``srvr`` answer: a member serves clients only while it is
    in a quorum, as leader or follower; otherwise ZooKeeper says it is not serving."""
    if NOT_SERVING in text:
        return False, None, "not serving requests (no quorum)"
    if "is not executed because it is not in the whitelist" in text:
        return False, None, "srvr is not in 4lw.commands.whitelist"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Mode":
            mode = value.strip()
            if mode in ("leader", "follower", "standalone"):
                return True, mode, None
            return False, mode, f"mode {mode}"
    return False, None, f"unexpected answer {text[:60]!r}"


def probe_members(members: list[tuple[str, str]], port: int = 2181,
                  timeout: float = 1.5, tls: ssl.SSLContext | None = None) -> list[MemberHealth]:
    """Ask each member (name, address) with ``srvr`` whether it serves and in which mode. The
    member id is the member's position in the list, as the zookeeper role numbers ``myid``."""
    out: list[MemberHealth] = []
    for myid, (name, address) in enumerate(members, start=1):
        try:
            serving, mode, problem = parse_srvr(four_letter_word(address, port, "srvr", timeout,
                                                                 tls))
        except OSError as exc:
            out.append(MemberHealth(name, address, False, False, None, str(exc) or repr(exc)))
            continue
        out.append(MemberHealth(name, address, serving, mode == "leader", str(myid), problem))
    return out
