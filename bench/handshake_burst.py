"""A burst of TLS connections against the node's listener, on loopback: the paced, per-address
listener (``nodes/api/listener.py``) beside asyncio's own server (what the node used before),
in the same run.

Each round: a server in this process with the lab's kind of certificate (ECDSA P-256), the node's
event-loop watch (``nodes/loop_lag.py``), and in child processes:

* ``--attackers`` clients, each from its own loopback address (127.0.0.2, .3, ...), opening
  ``--per-attacker`` TLS connections at once and holding them until the end;
* a probe from another address (127.0.0.100) connecting and handshaking every 0.1 s.

Prints, per variant: the worst loop lag, the slowest probe handshake, the server's CPU per
handshake, and the ratios (paced / asyncio). ``--rounds`` rounds per variant, alternated; the
worst of each kept. Saves JSON under bench/results/. About 10 s a round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support import save_results  # noqa: E402
from nodes.api.listener import PacedServer  # noqa: E402
from nodes.loop_lag import LoopLag  # noqa: E402
from nodes.metrics import Metrics  # noqa: E402
from tests.tls_kit import TestPki  # noqa: E402

CLIENT = r'''
import asyncio, json, ssl, sys, time
port, ca, source, count, hold, probe = (int(sys.argv[1]), sys.argv[2], sys.argv[3],
                                        int(sys.argv[4]), float(sys.argv[5]), sys.argv[6] == "1")
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False

async def one():
    started = time.perf_counter()
    r, w = await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, local_addr=(source, 0)), 30)
    return w, time.perf_counter() - started

async def main():
    if probe:
        worst, n, end = 0.0, 0, time.monotonic() + hold
        while time.monotonic() < end:
            w, took = await one()
            w.close()
            worst, n = max(worst, took), n + 1
            await asyncio.sleep(0.1)
        print(json.dumps({"worst_s": worst, "probes": n}))
        return
    done = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    ok = [d for d in done if not isinstance(d, BaseException)]
    await asyncio.sleep(hold)
    for w, _ in ok:
        w.close()
    print(json.dumps({"ok": len(ok)}))

asyncio.run(main())
'''


class _Hold(asyncio.Protocol):
    """Keeps the connection open and ignores what it is sent."""


async def _client(port: int, ca: str, source: str, count: int, hold_s: float, *,
                  probe: bool) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(port), ca, source, str(count), str(hold_s),
        "1" if probe else "0", stdout=asyncio.subprocess.PIPE)


async def _round(variant: str, pki: TestPki, attackers: int, per_attacker: int
                 ) -> dict[str, Any]:
    files = pki.files("paris-node1")
    context = files.server_context()
    loop = asyncio.get_running_loop()
    server: asyncio.AbstractServer
    if variant == "paced":
        server = await PacedServer.listen("127.0.0.1", 0, _Hold, backlog=512, tls=context,
                                          max_waiting=4096)
    else:
        server = await loop.create_server(_Hold, "127.0.0.1", 0, backlog=512, ssl=context)
    port = server.sockets[0].getsockname()[1]
    watch, stop = LoopLag(Metrics()), asyncio.Event()
    lag = asyncio.create_task(watch.run(stop))
    ca = str(pki.ca_only().ca)
    probe = await _client(port, ca, "127.0.0.100", 0, 6.0, probe=True)
    await asyncio.sleep(1.0)  # the probe's interpreter started and probing
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    burst = [await _client(port, ca, f"127.0.0.{2 + i}", per_attacker, 2.0, probe=False)
             for i in range(attackers)]
    outs = [await asyncio.wait_for(p.communicate(), 120) for p in burst]
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    probed = json.loads((await asyncio.wait_for(probe.communicate(), 60))[0])
    stop.set()
    await lag
    server.close()
    await server.wait_closed()
    handshaken = sum(json.loads(out)["ok"] for out, _ in outs)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"variant": variant, "handshaken": handshaken, "lag_s": watch.worst_s,
            "probe_s": probed["worst_s"], "probes": probed["probes"],
            "cpu_us_per_handshake": cpu / max(1, handshaken) * 1e6}


async def main(args: argparse.Namespace) -> None:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        pki = TestPki(Path(tmp))
        for n in range(args.rounds):
            for variant in ("asyncio", "paced"):
                row = await _round(variant, pki, args.attackers, args.per_attacker)
                print(f"round {n + 1} {variant:8s} lag {row['lag_s'] * 1000:6.0f} ms, probe "
                      f"{row['probe_s'] * 1000:6.0f} ms, {row['cpu_us_per_handshake']:5.0f} µs "
                      f"CPU per handshake, {row['handshaken']} handshaken")
                rows.append(row)
    worst = {v: {k: max(r[k] for r in rows if r["variant"] == v)
                 for k in ("lag_s", "probe_s", "cpu_us_per_handshake")}
             for v in ("asyncio", "paced")}
    print(f"\n{args.attackers} addresses x {args.per_attacker} TLS connections at once, a probe "
          f"from another address; worst of {args.rounds} rounds")
    print(f"{'':28s}{'asyncio':>10s}{'paced':>10s}{'ratio':>8s}")
    for key, label, scale, unit in (("lag_s", "event loop late by", 1000, "ms"),
                                    ("probe_s", "probe's handshake", 1000, "ms"),
                                    ("cpu_us_per_handshake", "CPU per handshake", 1, "µs")):
        a, p = worst["asyncio"][key] * scale, worst["paced"][key] * scale
        print(f"{label + ' (' + unit + ')':28s}{a:10.0f}{p:10.0f}{p / a if a else 0:8.2f}")
    save_results("handshake_burst", {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                     "attackers": args.attackers,
                                     "per_attacker": args.per_attacker, "rounds": rows,
                                     "worst": worst})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attackers", type=int, default=3)
    parser.add_argument("--per-attacker", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
