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
from chaos.pg_observer import PgObserver
from cluster import tls
from cluster.lab.health import carriers_control_url
from cluster.topology import Topology

log = logging.getLogger("tenir.drill")


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
                        PgObserver(dsn, history))
                    await observer.skip_existing()
                    out.append(observer)
                except psycopg.Error as exc:
                    log.warning("no store observer (%s): rpo and recipients not checked", exc)
            if urls:
                connector = aiohttp.TCPConnector(ssl=tls.http_ssl())  # HTTPS, the CA's
                http = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
                for site, url in urls.items():
                    carrier = CarrierLog(site, url, history, http)
                    try:  # start at its present: what earlier runs sent is not this drill's
                        await carrier.skip_to_end()
                    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
                        log.warning("carrier log of %s not skipped to its end: %s", site, exc)
                    out.append(carrier)
            yield out

    return open_collectors
