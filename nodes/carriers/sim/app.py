"""One simulated carrier site: SMPP, SMTP, voice and control servers sharing one state, started
and stopped together. Usable in-process (tests) or through ``python -m nodes.carriers.sim``.

A port of 0 lets the system choose; :attr:`Simulator.ports` holds the ports actually bound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp

from cluster.tls import TlsFiles
from nodes.carriers.sim.control import ControlServer
from nodes.carriers.sim.smpp_server import SmppServer
from nodes.carriers.sim.smtp_server import SmtpServer
from nodes.carriers.sim.state import SimState
from nodes.carriers.sim.submissions import DEFAULT_CAPACITY
from nodes.carriers.sim.voice_server import VoiceServer

log = logging.getLogger("tenir.sim")


@dataclass(frozen=True)
class SimConfig:
    site: str
    host: str = "127.0.0.1"
    smpp_port: int = 0
    smtp_port: int = 0
    voice_port: int = 0
    control_port: int = 0
    dedup: bool = False
    receipt_delay_ms: int = 50
    log_capacity: int = DEFAULT_CAPACITY  # entries of the submission log's ring
    journal: str | None = None  # the submission log's file: kept across restarts
    system_id: str = "tenir"
    password: str = "secret"  # noqa: S105 - the lab simulator's default; --password overrides
    # Signs the voice callbacks (nodes/carriers/callback_auth.py); None sends them unsigned,
    # and nodes refuse them.
    voice_callback_secret: str | None = None
    # TLS on every port (SMPP over TLS, SMTP with STARTTLS required, voice and control over
    # HTTPS), and the CA its own clients (voice callbacks, e-mail link clicks) verify the nodes
    # with. None: plain (unit tests of the protocols).
    tls: TlsFiles | None = None

    def __post_init__(self) -> None:
        if not self.site:
            raise ValueError("site: required")
        if self.log_capacity < 1:
            raise ValueError("log_capacity: must be >= 1")
        if self.receipt_delay_ms < 0:
            raise ValueError("receipt_delay_ms: must be >= 0")
        for name in ("smpp_port", "smtp_port", "voice_port", "control_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name}: must be between 0 and 65535")
        if len(self.system_id) > 15 or len(self.password) > 8:
            raise ValueError("system_id/password: at most 15/8 characters (SMPP 3.4)")
        if self.voice_callback_secret is not None and len(self.voice_callback_secret) < 32:
            raise ValueError("voice_callback_secret: at least 32 characters")


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.state = SimState(config.site, dedup=config.dedup,
                              log_capacity=config.log_capacity, journal=config.journal)
        self.ports: dict[str, int] = {}
        self._http: aiohttp.ClientSession | None = None
        self._smpp: SmppServer | None = None
        self._smtp: SmtpServer | None = None
        self._voice: VoiceServer | None = None
        self._control: ControlServer | None = None
        self._started = False

    async def start(self) -> dict[str, int]:
        if self._started:
            return self.ports
        self._started = True
        c = self.config
        delay_s = c.receipt_delay_ms / 1000
        server_tls = c.tls.server_context() if c.tls else None
        client_tls = c.tls.client_context() if c.tls else None
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            ssl=client_tls if client_tls is not None else True))
        try:
            self._smpp = SmppServer(self.state, host=c.host, port=c.smpp_port,
                                    system_id=c.system_id, password=c.password,
                                    receipt_delay_s=delay_s, server_name=f"sim-{c.site}",
                                    tls=server_tls)
            self.ports["smpp"] = await self._smpp.start()
            self._smtp = SmtpServer(self.state, host=c.host, port=c.smtp_port,
                                    receipt_delay_s=delay_s, http=self._http,
                                    hostname=f"mx.{c.site}.sim.tenir.invalid",
                                    tls=server_tls)
            self.ports["smtp"] = await self._smtp.start()
            self._voice = VoiceServer(self.state, host=c.host, port=c.voice_port,
                                      receipt_delay_s=delay_s, http=self._http,
                                      callback_secret=c.voice_callback_secret, tls=server_tls)
            self.ports["voice"] = await self._voice.start()
            self._control = ControlServer(self.state, host=c.host, port=c.control_port,
                                          tls=server_tls)
            self.ports["control"] = await self._control.start()
        except BaseException:
            await self.stop()
            raise
        log.info("simulator ready", extra={"event": "sim_ready", "site": c.site,
                                           "host": c.host, "ports": self.ports,
                                           "dedup": c.dedup})
        return self.ports

    async def stop(self) -> None:
        """Stop accepting everywhere first, then close sessions and reap tasks; idempotent."""
        if not self._started:
            return
        self._started = False
        for server in (self._control, self._voice, self._smtp, self._smpp):
            if server is not None:
                try:
                    await server.stop()
                except Exception:
                    log.exception("error while stopping", extra={"event": "sim_stop_error"})
        self._control = self._voice = self._smtp = self._smpp = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        self.state.submissions.close()
        log.info("simulator stopped", extra={"event": "sim_stopped", "site": self.config.site})

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
