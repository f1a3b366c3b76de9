"""``python -m nodes.carriers.sim --site paris --smpp-port P --smtp-port P --voice-port P
--control-port P [--dedup] [--receipt-delay-ms N] [--log-capacity N] [--journal FILE]``: one
simulated carrier site per process.

Logs JSON lines to stderr; the first ``sim_ready`` line gives the ports bound (useful with port 0).
Sessions, binds and control changes are logged at INFO, every message at DEBUG
(``--log-level DEBUG``); phone numbers and addresses are masked, passwords never logged.
SIGTERM or SIGINT stops it cleanly (exit 0). The SMPP password comes from ``--password`` or the
``TENIR_SIM_SMPP_PASSWORD`` environment variable and is never logged; the secret that signs the
voice callbacks from ``TENIR_SIM_VOICE_CALLBACK_SECRET`` (unset: callbacks go unsigned, and the
nodes refuse them).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from cluster.tls import TlsFiles
from nodes.carriers.sim import jsonlog
from nodes.carriers.sim.app import SimConfig, Simulator
from nodes.carriers.sim.submissions import DEFAULT_CAPACITY, JournalError

STOP_GRACE_S = 5.0
log = logging.getLogger("tenir.sim")


def parse_args(argv: list[str] | None = None) -> tuple[SimConfig, str]:
    p = argparse.ArgumentParser(prog="python -m nodes.carriers.sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--site", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--smpp-port", type=int, default=0)
    p.add_argument("--smtp-port", type=int, default=0)
    p.add_argument("--voice-port", type=int, default=0)
    p.add_argument("--control-port", type=int, default=0)
    p.add_argument("--dedup", action="store_true",
                   help="answer a reference seen before with its first message id and no new "
                        "acknowledgement (it is still counted as delivered and logged)")
    p.add_argument("--log-capacity", type=int, default=DEFAULT_CAPACITY,
                   help="entries kept by the submission log's ring (GET /submissions)")
    p.add_argument("--journal", default=None, metavar="FILE",
                   help="keep the submission log in FILE too: a restart (a power cut) carries on "
                        "from it instead of forgetting what this carrier delivered")
    p.add_argument("--receipt-delay-ms", type=int, default=50)
    p.add_argument("--system-id", default="tenir", help="SMPP system_id expected at bind")
    p.add_argument("--password", default=None,
                   help="SMPP password (default: $TENIR_SIM_SMPP_PASSWORD, else 'secret')")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--tls-cert", help="serve every port over TLS with this certificate "
                   "(SMTP: STARTTLS required)")
    p.add_argument("--tls-key", help="its private key")
    p.add_argument("--tls-ca", help="the CA that signed it and the nodes' certificates")
    a = p.parse_args(argv)
    if bool(a.tls_cert) != bool(a.tls_key) or bool(a.tls_cert) != bool(a.tls_ca):
        p.error("--tls-cert, --tls-key and --tls-ca go together")
    password = a.password or os.environ.get("TENIR_SIM_SMPP_PASSWORD") or "secret"
    try:
        config = SimConfig(site=a.site, host=a.host, smpp_port=a.smpp_port,
                           smtp_port=a.smtp_port, voice_port=a.voice_port,
                           control_port=a.control_port, dedup=a.dedup,
                           log_capacity=a.log_capacity, journal=a.journal,
                           receipt_delay_ms=a.receipt_delay_ms, system_id=a.system_id,
                           password=password, voice_callback_secret=os.environ.get(
                               "TENIR_SIM_VOICE_CALLBACK_SECRET") or None,
                           tls=(TlsFiles(Path(a.tls_ca), Path(a.tls_cert), Path(a.tls_key))
                                if a.tls_cert else None))
    except ValueError as exc:
        p.error(str(exc))
    return config, str(a.log_level).upper()


async def serve(config: SimConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sim = Simulator(config)
    try:
        await sim.start()
        await stop.wait()
        log.info("stopping on signal", extra={"event": "sim_signal"})
    finally:
        try:
            await asyncio.wait_for(sim.stop(), STOP_GRACE_S)
        except TimeoutError:
            log.error("stop took too long", extra={"event": "sim_stop_timeout"})
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    config, log_level = parse_args(argv)
    jsonlog.configure(log_level, {"site": config.site})
    try:
        return asyncio.run(serve(config))
    except (OSError, JournalError) as exc:
        log.error("cannot start", extra={"event": "sim_start_failed", "error": str(exc)})
        return 2


if __name__ == "__main__":
    sys.exit(main())
