"""Slow clients against a node's API over TLS, run from inside a lab namespace (``ip netns exec``)
so that each attacker has its own address, as attackers on a network would:

    python -m tests.lab.stall_attack --url https://10.213.0.11:8443 --ca ca.crt \\
        --slow-headers 100 --slow-bodies 100 --limit 30

A slow-header client sends a request head that never ends, a byte every 0.25 s; a slow-body
client announces 2,000 bytes on the public callback and sends a space every 0.25 s. Prints one
JSON line: the seconds each connection lasted until the node closed it (``null``: still open
at ``--limit``, or refused before the handshake ended).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
from urllib.parse import urlsplit

SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: node\r\nX-Slow: "  # a header that never ends
SLOW_BODY = (b"POST /api/v1/callbacks/voice?sig=k1.x HTTP/1.1\r\nHost: node\r\n"
             b"Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n{")


async def slow_client(host: str, port: int, context: ssl.SSLContext, limit_s: float,
                      head: bytes, drip: bytes) -> float | None:
    """Seconds from the head sent until the node closed the connection, or None."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), 10.0)
    except (OSError, TimeoutError, ssl.SSLError):
        return None
    writer.write(head)
    started = time.monotonic()

    async def trickle() -> None:
        for _ in range(int(limit_s * 4)):
            await asyncio.sleep(0.25)
            writer.write(drip)

    dripping = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(limit_s):
            while await reader.read(4096):
                pass
        return time.monotonic() - started
    except (TimeoutError, OSError, ssl.SSLError):
        return None if time.monotonic() - started >= limit_s else time.monotonic() - started
    finally:
        dripping.cancel()
        writer.close()


async def attack(url: str, ca: str, headers: int, bodies: int, limit_s: float
                 ) -> dict[str, list[float | None]]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    context = ssl.create_default_context(cafile=ca)
    clients = [slow_client(parts.hostname, parts.port, context, limit_s, SLOW_HEAD, b"a")
               for _ in range(headers)]
    clients += [slow_client(parts.hostname, parts.port, context, limit_s, SLOW_BODY, b" ")
                for _ in range(bodies)]
    done = await asyncio.gather(*clients)
    return {"headers": list(done[:headers]), "bodies": list(done[headers:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--slow-headers", type=int, default=100)
    parser.add_argument("--slow-bodies", type=int, default=100)
    parser.add_argument("--limit", type=float, default=30.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(attack(args.url, args.ca, args.slow_headers,
                                        args.slow_bodies, args.limit))))


if __name__ == "__main__":
    main()
