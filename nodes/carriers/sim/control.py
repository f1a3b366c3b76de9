"""The simulator's control API (aiohttp), what tests and chaos faults drive it with.

| route | does |
|---|---|
| ``GET /healthz`` | ``{"ok": true, "site": ...}`` |
| ``GET /report`` | per channel ``{received, unique_references, duplicates, delivered}``, totals |
| ``GET /submissions?after=N&limit=M`` | the submission log after cursor N (:mod:`.submissions`) |
| ``GET /references?channel=sms`` | ``{reference: times received}`` for one channel |
| ``GET /control`` | the current settings of every channel |
| ``POST /control`` | change settings (see :mod:`.state`); 400 naming the bad field |
| ``POST /reset`` | clear the records (settings are kept) |
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiohttp import web

from nodes.carriers.sim.state import SIM_CHANNELS, ControlError, SimState

log = logging.getLogger("tenir.sim.control")


def _bad(field: str, problem: str) -> web.Response:
    return web.json_response({"error": f"{field}: {problem}", "field": field}, status=400)


class ControlServer:
    def __init__(self, state: SimState, *, host: str, port: int,
                 tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.state = state
        self.host = host
        self.port = port
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/report", self._report)
        app.router.add_get("/references", self._references)
        app.router.add_get("/submissions", self._submissions)
        app.router.add_get("/control", self._get_control)
        app.router.add_post("/control", self._post_control)
        app.router.add_post("/reset", self._reset)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)

    async def start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "site": self.state.site})

    async def _report(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state.report())

    async def _references(self, request: web.Request) -> web.Response:
        wanted = request.query.get("channel", "")
        for channel in SIM_CHANNELS:
            if channel == wanted:
                return web.json_response(self.state.references(channel))
        return _bad("channel", f"must be one of {', '.join(SIM_CHANNELS)}")

    async def _submissions(self, request: web.Request) -> web.Response:
        values = {}
        for name, default in (("after", "0"), ("limit", "1000")):
            raw = request.query.get(name, default)
            if not raw.isdigit():
                return _bad(name, "must be an integer >= 0")
            values[name] = int(raw)
        try:
            page = self.state.submissions.page(values["after"], values["limit"])
        except ValueError as exc:
            field, _, problem = str(exc).partition(": ")
            return _bad(field, problem)
        return web.json_response(page)

    async def _get_control(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state.current_settings())

    async def _post_control(self, request: web.Request) -> web.Response:
        try:
            payload: Any = await request.json()
        except ValueError:
            return _bad("body", "must be JSON")
        try:
            settings = self.state.control(payload)
        except ControlError as exc:
            return _bad(exc.field, exc.problem)
        log.info("settings changed", extra={"event": "sim_control", "request": payload})
        return web.json_response(settings)

    async def _reset(self, _request: web.Request) -> web.Response:
        self.state.reset()
        log.info("records cleared", extra={"event": "sim_reset"})
        return web.json_response(self.state.report())
