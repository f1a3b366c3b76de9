"""The chaos collectors a drill runs, built from the inventory:

* the store observer (``chaos.pg_observer``) on ``$TENIR_DRILL_DSN``, or in the lab on the
  application's DSN through both sites' HAProxies (libpq tries them in turn). A drill takes
  PostgreSQL's primary away, so the observer here reconnects when its connection breaks (the
  next read then covers what was committed meanwhile: it reads by transaction horizon);
* the carriers' submission logs (``chaos.carrier_log``) where the carriers are the simulators
  (``tenir_carriers_simulated``); real carriers keep their own, and the duplicates invariant is
  then "not checked", said in the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import psycopg

from chaos.carrier_log import CarrierLog
from chaos.collect import Collector
from chaos.history import History
from chaos.pg_observer import SNAPSHOT, PgObserver
from cluster.lab.health import carriers_control_url
from cluster.topology import Topology

log = logging.getLogger("tenir.drill")


class ReconnectingObserver(PgObserver):
    """A :class:`PgObserver` that opens a new connection when the last one broke, and takes
    its reads one at a time: the collectors' period and the nemesis's read right before a fault
    may ask at once, and one connection runs one transaction."""

    def __init__(self, dsn: str, history: History, *, process: str = "observer") -> None:
        super().__init__(dsn, history, process=process)
        self._one = asyncio.Lock()

    async def _ensure(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)

    async def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = None

    async def __aenter__(self) -> ReconnectingObserver:
        await self._ensure()
        return self

    async def skip_existing(self) -> float:
        """Start at the present: what was committed before the drill is not read (a drill's
        history holds its own campaign, not every earlier one). Returns the database time."""
        async with self._one:
            await self._ensure()
            assert self._conn is not None
            row = await (await self._conn.execute(SNAPSHOT)).fetchone()
            assert row is not None
            self._horizon = int(row[1])
            return float(row[0])

    async def read(self) -> float:
        async with self._one:
            await self._ensure()
            try:
                return await super().read()
            except psycopg.OperationalError:
                await self._drop()
                raise

    async def final(self, campaign: int) -> float:
        async with self._one:
            await self._ensure()
            try:
                return await super().final(campaign)
            except psycopg.OperationalError:
                await self._drop()
                await self._ensure()
                return await super().final(campaign)


async def skip_to_end(carrier: CarrierLog) -> None:
    """Start the carrier's log at its present: what earlier runs submitted (and what the
    simulator's ring dropped of it) is not this drill's. A simulator that does not answer is
    read from its start when it does."""
    try:
        async with carrier.http.get(f"{carrier.url}/submissions",
                                    params={"after": "0", "limit": "1"},
                                    timeout=carrier.timeout) as resp:
            page = await resp.json()
        carrier.cursor, carrier.boot = int(page["last"]), str(page["boot"])
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
        log.warning("carrier log of %s not skipped to its end: %s", carrier.site, exc)


def observer_dsn(topo: Topology, lab: bool) -> str | None:
    """``$TENIR_DRILL_DSN``, else (this inventory's lab running) both HAProxies' application
    DSN, else None."""
    dsn = os.environ.get("TENIR_DRILL_DSN")
    if dsn:
        return dsn
    if not lab:
        return None
    try:
        from cluster.lab.access import app_dsn

        parts = [psycopg.conninfo.conninfo_to_dict(app_dsn(topo, s.name))
                 for s in topo.datacenter_sites]
    except Exception:  # not a lab that is up: no observer
        return None
    first = dict(parts[0])
    first["host"] = ",".join(str(p["host"]) for p in parts)
    first["port"] = ",".join(str(p["port"]) for p in parts)
    first["target_session_attrs"] = "read-write"
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in first.items()})


def carrier_urls(topo: Topology) -> dict[str, str]:
    if not topo.vars.get("tenir_carriers_simulated", False):
        return {}
    return {h.site: carriers_control_url(topo, h) for h in topo.hosts_running("carriers")}


def collectors_for(topo: Topology, lab: bool) -> Any:
    """The factory ``Monitor`` takes: ``history`` -> an async context manager yielding the
    collectors (the observer first), or nothing when there is neither DSN nor simulator."""
    dsn = observer_dsn(topo, lab)
    urls = carrier_urls(topo)

    @contextlib.asynccontextmanager
    async def open_collectors(history: History) -> AsyncIterator[list[Collector]]:
        async with contextlib.AsyncExitStack() as stack:
            out: list[Collector] = []
            if dsn is not None:
                try:
                    observer = await stack.enter_async_context(
                        ReconnectingObserver(dsn, history))
                    await observer.skip_existing()
                    out.append(observer)
                except psycopg.Error as exc:
                    log.warning("no store observer (%s): rpo and recipients not checked", exc)
            if urls:
                http = await stack.enter_async_context(aiohttp.ClientSession())
                for site, url in urls.items():
                    carrier = CarrierLog(site, url, history, http)
                    await skip_to_end(carrier)
                    out.append(carrier)
            yield out

    return open_collectors
