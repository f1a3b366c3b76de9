"""The runner's environment on the machine lab (``cluster.lab.lab.Lab``): how it prepares the lab,
reads the PostgreSQL roles, collects the history and launches campaigns.

- Collectors: one :class:`chaos.pg_observer.PgObserver` through every datacenter site's HAProxy
  (it goes on through the one that survives) and one :class:`chaos.carrier_log.CarrierLog` per
  site's carrier simulator, both started at the present, read every ``period_s`` by
  :class:`chaos.collect.Collecting`.
- Launches: ``POST /api/v1/campaigns`` on the first alert node that answers, with the lab's
  operator token; an answer 4xx is a refusal (nothing was created), a 5xx or no answer from any
  node an unknown outcome. The campaign's recipients are the ``requested`` its answer gives (a
  streaming launch answers while it still writes them), else what the campaign says.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chaos.carrier_log import CarrierLog
from chaos.collect import Collecting
from chaos.history import History
from chaos.matrix import Roles, Tools
from chaos.pg_observer import PgObserver
from chaos.runner import RunEnv
from chaos.workload import Refused
from cluster import tls
from cluster.httpjson import HttpError, request_json
from cluster.lab.access import app_dsn
from cluster.lab.health import carriers_control_url, node_url, patroni_view
from cluster.lab.lab import Lab
from cluster.lab.netns import namespace_name
from cluster.node_api import operator_token
from cluster.topology import Topology

log = logging.getLogger("tenir.chaos.lab")
NORMAL = {"channel": "all", "mode": "normal", "drop_receipts": False}


class LabCollectors:
    def __init__(self, collecting: Collecting, observer: PgObserver) -> None:
        self.collecting = collecting
        self.observer = observer

    async def read_all(self) -> None:
        await self.collecting.read_all()

    async def final(self, campaign: int) -> None:
        await self.observer.final(campaign)


@dataclass
class LabEnv:
    lab: Lab
    tools: Tools = field(default_factory=Tools)
    period_s: float = 0.5
    up_timeout_s: float = 600.0

    @property
    def topo(self) -> Topology:
        return self.lab.topo

    @property
    def backend(self) -> str:
        return self.lab.topo.coordination

    @property
    def datacenter_sites(self) -> Sequence[str]:
        return [s.name for s in self.topo.datacenter_sites]

    # --- prepare ---------------------------------------------------------------------------
    def prepare(self) -> None:
        firewall = self.tools.firewall
        for host in self.topo.hosts.values():  # what an interrupted run left
            ns = namespace_name(host.name)
            if firewall.holds_rules(ns):
                log.warning("removing chaos rules left in %s", ns)
                firewall.clear(ns)
        self.lab.up(timeout=self.up_timeout_s)
        for host in self.topo.hosts_running("carriers"):
            request_json("POST", f"{carriers_control_url(self.topo, host)}/control", NORMAL,
                         timeout=5.0)
        self._cancel_running()

    def _cancel_running(self) -> None:
        token = operator_token("operator")
        items = self._api("GET", "/campaigns?state=running,paused&limit=500", token)["items"]
        for c in items:
            log.warning("cancelling campaign %s left by an earlier run", c["id"])
            self._api("POST", f"/campaigns/{c['id']}/cancel", token)

    def _api(self, method: str, path: str, token: str, body: Any = None) -> Any:
        errors = []
        for host in self.topo.hosts_running("alert_nodes"):
            try:
                _, data = request_json(method, f"{node_url(self.topo, host)}/api/v1{path}",
                                       body, timeout=10.0, bearer=token,
                                       accept_status=(200, 201))
                return data
            except HttpError as exc:
                if exc.status is not None:
                    raise
                errors.append(str(exc))
        raise HttpError(path, None, "; ".join(errors) or "no alert node")

    # --- roles -----------------------------------------------------------------------------
    def roles(self) -> Roles:
        view = patroni_view(self.topo)
        if view is None or view.primary is None:
            raise RuntimeError("no PostgreSQL primary: Patroni names none")
        primary = self.topo.hosts[view.primary].site
        standby = next(s for s in self.datacenter_sites if s != primary)
        return Roles(primary=primary, standby=standby)

    # --- collect ---------------------------------------------------------------------------
    @asynccontextmanager
    async def collect(self, history: History) -> AsyncIterator[LabCollectors]:
        dsns = [app_dsn(self.topo, s) for s in self.datacenter_sites]
        connector = aiohttp.TCPConnector(ssl=tls.http_ssl())  # the carriers' control: HTTPS
        async with aiohttp.ClientSession(connector=connector) as http, \
                PgObserver(dsns, history) as observer:
            await observer.skip_existing()
            logs = [CarrierLog(h.site, carriers_control_url(self.topo, h), history, http)
                    for h in self.topo.hosts_running("carriers")]
            for carrier in logs:
                await carrier.skip_to_end()
            # the observer last: its snapshot is the closest to a fault (the rpo window)
            async with Collecting([*logs, observer], self.period_s) as collecting:
                yield LabCollectors(collecting, observer)

    # --- launch ----------------------------------------------------------------------------
    async def launch(self, population: int, scenario: str, batch_size: int) -> tuple[int, int]:
        token = operator_token("operator")
        body = {"scenario": scenario, "population": population, "batch_size": batch_size}
        try:
            created = await asyncio.to_thread(self._api, "POST", "/campaigns", token, body)
        except HttpError as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                raise Refused(f"{exc.status} {exc.reason}") from exc
            raise
        campaign = int(created["id"])
        if "requested" in created:  # a streaming launch answers before every recipient is written
            return campaign, int(created["requested"])
        shown = await asyncio.to_thread(self._api, "GET", f"/campaigns/{campaign}", token)
        return campaign, int(shown["recipients"])


def _conforms(env: LabEnv) -> RunEnv:
    return env  # mypy checks here that LabEnv is what the runner needs
