"""The carrier collector: reads a site's simulator submission log (``GET /submissions``) into
the history as ``submit`` ok ops (process ``carrier:SITE``, ``at`` = the simulator's wall time).

It pages from its cursor until the log has nothing newer. A simulator that does not answer
(its site is cut off or has no power) is not an error of the collector and loses nothing:
``read()`` returns, and a later read takes up from the cursor what the simulator kept (it keeps
its log across a restart with its journal, ``--journal``). What is really missed becomes a
``gap`` info op, so that the duplicates checker says unknown rather than counting short: a
simulator whose log started again (its ``boot`` changed: restarted without a journal; the
cursor then starts from 0), entries the ring dropped before they were read (``lost``).

``skip_to_end()`` starts the collector at the simulator's present (what earlier runs sent is
not read).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from chaos.history import History

PAGE = 5000


class CarrierLog:
    def __init__(self, site: str, control_url: str, history: History,
                 http: aiohttp.ClientSession, *, timeout_s: float = 3.0) -> None:
        self.site = site
        self.url = control_url.rstrip("/")
        self.history = history
        self.http = http
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.cursor = 0
        self.boot: str | None = None
        self.unreachable = False
        self.outages = 0  # times it stopped answering

    async def skip_to_end(self) -> int:
        """Start after the last entry the simulator holds now; returns its sequence number."""
        page = await self._page(limit=1)
        self.boot, self.cursor = str(page["boot"]), int(page["last"])
        return self.cursor

    async def read(self) -> int:
        """Every submission newer than the cursor; returns how many were added."""
        added = 0
        while True:
            try:
                page = await self._page()
            except (aiohttp.ClientError, TimeoutError, ValueError):
                if not self.unreachable:
                    self.outages += 1
                self.unreachable = True
                return added
            self.unreachable = False
            if self.boot is not None and page["boot"] != self.boot:
                self.history.add(f"carrier:{self.site}", "info", "gap", {
                    "source": f"carrier:{self.site}", "lost": None,
                    "reason": "simulator log started again (restarted without its journal): "
                              "what it accepted after the last read before that is lost"})
                self.boot, self.cursor = page["boot"], 0
                continue
            self.boot = page["boot"]
            if page["lost"]:
                self.history.add(f"carrier:{self.site}", "info", "gap", {
                    "source": f"carrier:{self.site}", "lost": page["lost"],
                    "reason": "left the simulator's ring before it was read"})
            for s in page["items"]:
                self.history.add(f"carrier:{self.site}", "ok", "submit", {
                    "site": s["site"], "channel": s["channel"], "reference": s["reference"],
                    "message_id": s["message_id"], "resubmission": s["resubmission"],
                    "seq": s["seq"]}, at=float(s["at"]))
                added += 1
            self.cursor = int(page["next"])
            if not page["items"] or self.cursor >= int(page["last"]):
                return added

    async def _page(self, limit: int = PAGE) -> dict[str, Any]:
        async with self.http.get(f"{self.url}/submissions",
                                 params={"after": str(self.cursor), "limit": str(limit)},
                                 timeout=self.timeout) as resp:
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status}")
            page: dict[str, Any] = await resp.json()
            return page
