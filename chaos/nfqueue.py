"""A userspace packet delayer on Linux's nfnetlink_queue, for kernels without ``sch_netem``.

iptables rules (``-j NFQUEUE --queue-num N --queue-bypass``) hand each matching packet to this
process; it keeps only the packet's id (copy mode META: no payload crosses to userspace), and
gives the verdict ACCEPT once the queue's delay has passed (or DROP, for the queue's loss
fraction, at once). The kernel holds the packet meanwhile; ``--queue-bypass`` lets packets
through undelayed if this process is not running, so a crash never cuts a link.

Run one per network namespace (a netlink socket belongs to the namespace it was opened in)::

    ip netns exec NS python -m chaos.nfqueue --queue 7:5.0:0 --queue 8:7.5:0.02

``--queue NUM:DELAY_MS:LOSS``. SIGTERM/SIGINT: every held packet is accepted at once, then the
queues are unbound and it exits 0. A line of JSON on stderr says when it is ready and, at exit,
how many packets it saw, delayed and dropped per queue.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Final

NETLINK_NETFILTER: Final = 12
NFNL_SUBSYS_QUEUE: Final = 3
NFQNL_MSG_PACKET: Final = 0
NFQNL_MSG_VERDICT: Final = 1
NFQNL_MSG_CONFIG: Final = 2
NFQA_PACKET_HDR: Final = 1
NFQA_VERDICT_HDR: Final = 2
NFQA_CFG_CMD: Final = 1
NFQA_CFG_PARAMS: Final = 2
NFQA_CFG_QUEUE_MAXLEN: Final = 3
NFQNL_CFG_CMD_BIND: Final = 1
NFQNL_CFG_CMD_UNBIND: Final = 2
NFQNL_COPY_META: Final = 1
NF_DROP: Final = 0
NF_ACCEPT: Final = 1
NLM_F_REQUEST: Final = 0x1
NLM_F_ACK: Final = 0x4
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
QUEUE_MAXLEN: Final = 20_000
RCVBUF: Final = 8 << 20
MAX_DELAY_MS: Final = 10_000.0


class NfQueueError(RuntimeError):
    pass


@dataclass(frozen=True)
class QueueSpec:
    """One queue: its number (as in the NFQUEUE rule), the one-way delay and the loss fraction."""

    num: int
    delay_ms: float
    loss: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.num <= 65535:
            raise ValueError(f"queue {self.num}: number must be between 0 and 65535")
        if not 0 <= self.delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"queue {self.num}: delay_ms must be between 0 and {MAX_DELAY_MS:g}")
        if not 0 <= self.loss <= 1:
            raise ValueError(f"queue {self.num}: loss must be between 0 and 1")

    @classmethod
    def parse(cls, text: str) -> QueueSpec:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"{text!r}: expected NUM:DELAY_MS[:LOSS]")
        try:
            return cls(int(parts[0]), float(parts[1]), float(parts[2]) if len(parts) == 3 else 0.0)
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from None

    def arg(self) -> str:
        return f"{self.num}:{self.delay_ms:g}:{self.loss:g}"


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _message(msg: int, queue: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags,
                       seq, 0) + body


def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return out


@dataclass
class QueueStats:
    seen: int = 0
    dropped: int = 0
    max_held: int = 0


@dataclass
class Delayer:
    """The socket, the bound queues and the packets held until their verdict is due."""

    specs: dict[int, QueueSpec]
    rng: random.Random = field(default_factory=random.Random)
    stats: dict[int, QueueStats] = field(default_factory=dict)
    _held: list[tuple[float, int, int]] = field(default_factory=list)  # (due, id, queue)
    _seq: int = 0
    _sock: socket.socket | None = None

    def open(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((0, 0))
        self._sock = sock
        for spec in self.specs.values():
            self._config(spec.num, _attr(NFQA_CFG_CMD, struct.pack(
                "!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET)))
            self._config(spec.num, _attr(NFQA_CFG_PARAMS, struct.pack(
                "!IB", 0, NFQNL_COPY_META)) + _attr(NFQA_CFG_QUEUE_MAXLEN,
                                                   struct.pack("!I", QUEUE_MAXLEN)))
            self.stats[spec.num] = QueueStats()

    def _config(self, queue: int, attrs: bytes) -> None:
        """Send a config message and wait for its acknowledgement (an error names the cause)."""
        assert self._sock is not None
        self._seq += 1
        self._sock.send(_message(NFQNL_MSG_CONFIG, queue, attrs, self._seq,
                                 NLM_F_REQUEST | NLM_F_ACK))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            data = self._sock.recv(65536)
            for kind, seq, payload in _split(data):
                if kind == NLMSG_ERROR and seq == self._seq:
                    errno = -struct.unpack_from("=i", payload, 0)[0]
                    if errno:
                        raise NfQueueError(f"queue {queue}: {os.strerror(errno)}")
                    return
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    self._on_packet(payload)
        raise NfQueueError(f"queue {queue}: no answer from nfnetlink_queue")

    def _verdict(self, queue: int, packet_id: int, verdict: int) -> None:
        assert self._sock is not None
        self._seq += 1
        self._sock.send(_message(NFQNL_MSG_VERDICT, queue, _attr(
            NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id)), self._seq))

    def _on_packet(self, payload: bytes) -> None:
        queue = socket.ntohs(struct.unpack_from("=H", payload, 2)[0])
        hdr = _attrs(payload, 4).get(NFQA_PACKET_HDR)
        if hdr is None:
            return
        packet_id = struct.unpack_from("!I", hdr, 0)[0]
        spec = self.specs.get(queue)
        if spec is None:
            self._verdict(queue, packet_id, NF_ACCEPT)
            return
        stats = self.stats[queue]
        stats.seen += 1
        if spec.loss and self.rng.random() < spec.loss:
            stats.dropped += 1
            self._verdict(queue, packet_id, NF_DROP)
            return
        heapq.heappush(self._held, (time.monotonic() + spec.delay_ms / 1000, packet_id, queue))
        stats.max_held = max(stats.max_held, len(self._held))

    def run(self, stop: list[bool]) -> None:
        """Receive and release until ``stop[0]``; then release everything held."""
        assert self._sock is not None
        sock = self._sock
        while not stop[0]:
            now = time.monotonic()
            while self._held and self._held[0][0] <= now:
                _due, packet_id, queue = heapq.heappop(self._held)
                self._verdict(queue, packet_id, NF_ACCEPT)
            timeout = max(0.0, self._held[0][0] - now) if self._held else 0.5
            try:
                ready, _, _ = select.select([sock], [], [], timeout)
            except InterruptedError:
                continue
            if not ready:
                continue
            while True:
                try:
                    data = sock.recv(1 << 16, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except OSError as exc:  # ENOBUFS: the kernel dropped messages; carry on
                    print(json.dumps({"event": "nfqueue_overrun", "error": str(exc)}),
                          file=sys.stderr, flush=True)
                    break
                for kind, _seq, body in _split(data):
                    if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                        self._on_packet(body)
        self.release_all()

    def release_all(self) -> None:
        while self._held:
            _due, packet_id, queue = heapq.heappop(self._held)
            self._verdict(queue, packet_id, NF_ACCEPT)

    def close(self) -> None:
        if self._sock is None:
            return
        for spec in self.specs.values():
            with contextlib.suppress(OSError, NfQueueError):
                self._config(spec.num, _attr(NFQA_CFG_CMD, struct.pack(
                    "!BxH", NFQNL_CFG_CMD_UNBIND, socket.AF_INET)))
        self._sock.close()
        self._sock = None


def _split(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, seq, payload after the netlink header) of each message of a datagram."""
    out = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            break
        out.append((kind, seq, data[offset + 16:offset + length]))
        offset += (length + 3) & ~3
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos.nfqueue", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queue", action="append", required=True, metavar="NUM:DELAY_MS[:LOSS]")
    p.add_argument("--seed", type=int, default=None, help="seed of the loss draws")
    a = p.parse_args(argv)
    try:
        specs = [QueueSpec.parse(q) for q in a.queue]
    except ValueError as exc:
        p.error(str(exc))
    if len({s.num for s in specs}) != len(specs):
        p.error("a queue number is given twice")
    delayer = Delayer({s.num: s for s in specs}, rng=random.Random(a.seed))
    stop = [False]

    def on_signal(_signum: int, _frame: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        delayer.open()
    except (OSError, NfQueueError) as exc:
        print(json.dumps({"event": "nfqueue_failed", "error": str(exc)}), file=sys.stderr,
              flush=True)
        return 2
    print(json.dumps({"event": "nfqueue_ready", "queues": [s.arg() for s in specs]}),
          file=sys.stderr, flush=True)
    try:
        delayer.run(stop)
    finally:
        delayer.close()
        print(json.dumps({"event": "nfqueue_stopped", "stats": {
            str(q): vars(s) for q, s in delayer.stats.items()}}), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
