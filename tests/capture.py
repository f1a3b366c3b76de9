"""What a packet capture says about clear text: every TCP connection is judged by the bytes
each side sends (``tshark`` reads the capture). A connection opened in the capture is encrypted
when it opens with a TLS handshake record, or with PostgreSQL's SSLRequest answered ``S`` and
then TLS; SSH (encrypted after its banner) is named as such; anything else is clear text,
reported with the ports and the first bytes as text. ``tcpdump`` captures (Debian packages
tcpdump and tshark).

A connection opened before the capture (its SYN not captured: an SMPP session or a pool
connection lives for hours) may show a segment in the middle of a TLS record first, since TLS
records span several segments. It is TLS when each side that spoke starts some segment with a
TLS record; clear when a segment reads as text (HTTP, SMTP, SQL in PostgreSQL's messages);
otherwise "mid-stream". What a mid-stream connection carries is judged by searching the raw
capture: ``clear_numbers`` finds a recipient's number (a clear SMPP submit_sm carries it as
digits, a clear query or replication stream as text)."""

from __future__ import annotations

import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TLS_RECORD = bytes.fromhex("1603")  # handshake, TLS 1.x
PG_SSL_REQUEST = bytes.fromhex("0000000804d2162f")
SSH = b"SSH-2.0-"
# A French number as digits, with or without its +: 33, a digit 1-9, eight more digits.
NUMBER = re.compile(rb"33[1-9]\d{8}")


def tls_record(data: bytes) -> bool:
    """A TLS record header: content type 20-23 (change cipher spec, alert, handshake,
    application data), version 3.1-3.4, a length TLS allows. No clear-text protocol of ours
    starts so (SMPP's first word is a PDU length, 0x17030303 would be 386 MB)."""
    return (len(data) >= 5 and 20 <= data[0] <= 23 and data[1] == 3 and 1 <= data[2] <= 4
            and int.from_bytes(data[3:5], "big") <= 2**14 + 2048)


def reads_as_text(data: bytes) -> bool:
    """At least 16 bytes, four fifths of them printable ASCII or line ends."""
    if len(data) < 16:
        return False
    printable = sum(1 for b in data if 32 <= b < 127 or b in (9, 10, 13))
    return printable * 5 >= len(data) * 4


def clear_numbers(raw: bytes) -> list[bytes]:
    """The recipients' numbers found as digits in ``raw`` (a capture file's bytes)."""
    return NUMBER.findall(raw)


@dataclass(frozen=True)
class Stream:
    client: str  # address:port (the SYN's sender; else the first to send)
    server: str
    client_segments: tuple[bytes, ...]
    server_segments: tuple[bytes, ...] = ()
    opened_in_capture: bool = True

    @property
    def first_client(self) -> bytes:
        return self.client_segments[0] if self.client_segments else b""

    @property
    def first_server(self) -> bytes:
        return self.server_segments[0] if self.server_segments else b""

    @property
    def verdict(self) -> str:
        if not self.opened_in_capture:
            return self._mid_stream_verdict()
        if self.first_client.startswith(TLS_RECORD):
            return "tls"
        if self.first_client.startswith(PG_SSL_REQUEST):
            second = self.client_segments[1] if len(self.client_segments) > 1 else b""
            if self.first_server[:1] == b"S" and second.startswith(TLS_RECORD):
                return "tls"
            return "clear"  # refused TLS ("N") and went on in clear, or nothing after
        if self.first_client.startswith(SSH) or self.first_server.startswith(SSH):
            return "ssh"
        return "clear"

    def _mid_stream_verdict(self) -> str:
        sides = [side for side in (self.client_segments, self.server_segments) if side]
        if any(reads_as_text(data) for side in sides for data in side):
            return "clear"
        if sides and all(any(tls_record(data) for data in side) for side in sides):
            return "tls"
        return "mid-stream"

    def describe(self) -> str:
        text = self.first_client[:60].decode("ascii", "replace")
        return f"{self.client} -> {self.server}: {text!r}"


def streams(pcap: Path) -> list[Stream]:
    """Every TCP connection of the capture with payload, in order (one tshark pass: the
    segments with payload and the opening SYNs)."""
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", "tcp.len > 0 || (tcp.flags.syn == 1 && "
         "tcp.flags.ack == 0)", "-T", "fields", "-E", "separator=|",
         "-e", "tcp.stream", "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst",
         "-e", "tcp.dstport", "-e", "tcp.flags.syn", "-e", "tcp.payload"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    ends: dict[str, tuple[str, str]] = {}  # stream -> (client, server)
    opened: set[str] = set()
    sent: dict[str, list[tuple[str, bytes]]] = {}
    for line in out.splitlines():
        fields = line.split("|")
        if len(fields) != 7:
            continue
        stream, src, sport, dst, dport, syn, payload = fields
        ends.setdefault(stream, (f"{src}:{sport}", f"{dst}:{dport}"))
        if syn in ("1", "True"):
            opened.add(stream)
        if payload:
            data = bytes.fromhex(payload.split(",")[0].replace(":", ""))
            sent.setdefault(stream, []).append((f"{src}:{sport}", data))
    result = []
    for stream, segments in sent.items():
        client, server = ends[stream]
        result.append(Stream(client, server,
                             tuple(p for who, p in segments if who == client),
                             tuple(p for who, p in segments if who == server),
                             opened_in_capture=stream in opened))
    return result


def clear_text(pcap: Path) -> list[str]:
    """The connections that are neither TLS nor SSH, described."""
    return [s.describe() for s in streams(pcap) if s.verdict == "clear"]


def _wait_listening(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Until tcpdump says it listens (its first line on stderr)."""
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], timeout)
    line = proc.stderr.readline().decode(errors="replace") if ready else ""
    if "listening on" not in line:
        raise RuntimeError(f"tcpdump did not start within {timeout:.0f} s: {line.strip()}")
    time.sleep(1.0)  # it says so a little before its filter takes packets


@contextmanager
def capture(interface: str, pcap: Path, bpf: str = "tcp") -> Iterator[Path]:
    """tcpdump on ``interface`` into ``pcap`` while the block runs; stopped by its PID."""
    proc = subprocess.Popen(["tcpdump", "--immediate-mode", "-i", interface, "-U", "-s", "256",
                             "-w", str(pcap), bpf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(proc)
        yield pcap
        time.sleep(0.5)  # the last packets reach tcpdump
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
