"""What ``chaos.latency`` costs and how close it gets: three throwaway namespaces (tdly-*),
10 ms round trip between a and b, 15 ms from each to c (the lab's paris, marseille, witness).

It prints, for each pair, the round trip ping measures beside the target (ratio), idle and
while a UDP stream of RATE packets per second crosses a -> b (and its echo b -> a); and the
delayers' CPU time per second and per packet at each rate, beside the sender's own CPU (the
reference: what producing the traffic costs in the same interpreter). Root only.

Usage: .venv/bin/python bench/latency_cpu.py [--rates 1000,3000,5000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from chaos.latency import DegradedLink, Side, between_sites  # noqa: E402
from chaos.scratch_net import Triangle, triangle  # noqa: E402

RTT = {("a", "b"): 10.0, ("a", "c"): 15.0, ("b", "c"): 15.0}
TICK = os.sysconf("SC_CLK_TCK")

# Sends RATE datagrams/s for SECONDS to an echo server and counts the echoes.
SENDER = r"""
import socket, sys, time
dst, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False)
n = got = 0; start = time.monotonic()
while (now := time.monotonic()) - start < seconds:
    while n < (now - start) * rate:
        s.sendto(b"x" * 64, (dst, 9999)); n += 1
    try:
        while True: s.recv(100); got += 1
    except BlockingIOError: pass
    time.sleep(0.0005)
time.sleep(0.2)
try:
    while True: s.recv(100); got += 1
except BlockingIOError: pass
print(n, got, time.process_time())
"""
ECHO = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9999))
while True:
    d, a = s.recvfrom(100); s.sendto(d, a)
"""


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def ping(net: Triangle, src: str, dst: str, count: int = 20) -> float:
    out = subprocess.run(["ip", "netns", "exec", net.namespaces[src], "ping", "-n", "-q", "-c",
                          str(count), "-i", "0.05", net.addr[(dst, src)]],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    m = re.search(r"= [0-9.]+/([0-9.]+)/", out)
    assert m is not None, out
    return float(m.group(1))


def in_ns(net: Triangle, node: str, script: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", net.namespaces[node], sys.executable, "-c", script, *args]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="1000,3000,5000")
    p.add_argument("--seconds", type=float, default=5.0)
    a = p.parse_args()
    rates = [int(r) for r in a.rates.split(",")]
    results: dict[str, object] = {"at": datetime.now(UTC).isoformat(), "rtt": {}, "load": []}
    with triangle(f"tdly-{os.getpid() % 100000}") as net:
        sides = {n: Side((net.namespaces[n],), net.addresses_of(n)) for n in "abc"}
        fault = DegradedLink(between_sites(sides, RTT))
        fault.inject()
        echo = subprocess.Popen(in_ns(net, "b", ECHO))
        try:
            print(f"{'pair':<6} {'target ms':>9} {'measured':>9} {'ratio':>6}")
            for (x, y), rtt in RTT.items():
                got = ping(net, x, y)
                results["rtt"][f"{x}-{y}"] = got  # type: ignore[index]
                print(f"{x}-{y:<4} {rtt:>9.1f} {got:>9.2f} {got / rtt:>6.2f}")
            print(f"\n{'pkt/s':>6} {'delayer CPU %':>13} {'us/packet':>9} {'sender CPU %':>12} "
                  f"{'ratio':>6} {'echoed':>7} {'a-b ping ms':>11}")
            pids = fault.delayer_pids()
            for rate in rates:
                before = {ns: cpu_s(pid) for ns, pid in pids.items()}
                t0 = time.monotonic()
                sender = subprocess.Popen(in_ns(net, "a", SENDER, net.addr[("b", "a")],
                                                str(rate), str(a.seconds)),
                                          stdout=subprocess.PIPE, text=True)
                loaded_rtt = ping(net, "a", "b", count=int(a.seconds * 10))
                out, _ = sender.communicate(timeout=a.seconds + 30)
                elapsed = time.monotonic() - t0
                sent, echoed, sender_cpu = out.split()
                used = sum(cpu_s(pid) - before[ns] for ns, pid in pids.items())
                packets = 2 * int(sent)  # each datagram crosses two delayers (there and back)
                row = {"rate": rate, "delayer_cpu_pct": 100 * used / elapsed,
                       "us_per_packet": 1e6 * used / max(packets, 1),
                       "sender_cpu_pct": 100 * float(sender_cpu) / elapsed,
                       "echoed": int(echoed) / max(int(sent), 1), "loaded_rtt_ms": loaded_rtt}
                results["load"].append(row)  # type: ignore[attr-defined]
                print(f"{rate:>6} {row['delayer_cpu_pct']:>13.1f} {row['us_per_packet']:>9.1f} "
                      f"{row['sender_cpu_pct']:>12.1f} "
                      f"{row['delayer_cpu_pct'] / max(row['sender_cpu_pct'], 0.1):>6.2f} "
                      f"{row['echoed']:>7.1%} {loaded_rtt:>11.2f}")
        finally:
            echo.kill()
            echo.wait()
            fault.heal()
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "latency_cpu.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
