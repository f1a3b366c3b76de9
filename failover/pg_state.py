"""PostgreSQL as Patroni sees it, for the watchdog: which member is primary, which is the
synchronous standby, or that nobody can tell.

:class:`PatroniRestView` reads ``GET /cluster`` (unauthenticated) of the node's configured
Patroni REST APIs (``patroni_urls`` in the node config). It asks all of them at once, each within
``timeout_s`` (1 s), and takes the first answer that comes (HTTP 200 with a cluster view); the
other requests are cancelled. Every Patroni reads the same leader key from the DCS, so any answer
will do, and a dead host (the primary's site lost) costs the cycle nothing while another one
answers. A Patroni that cannot read its DCS answers an error, so an isolated Patroni's stale view
is not taken. When none answers within ``timeout_s``, the state is *unknown*: the watchdog then
acts as if it had not asked (the store's write decides).

The watchdog depends only on :class:`PostgresView`; unit tests give it a fake.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from replication.patroni import PatroniCluster, parse_cluster

log = logging.getLogger("tenir.watchdog.postgres")

READ_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class PgState:
    """One reading of Patroni's cluster view, or why there is none (``answered_by`` is None)."""

    answered_by: str | None = None  # the Patroni URL whose /cluster was read
    primary: str | None = None  # member holding the leader key
    primary_site: str | None = None  # the primary's ``site`` tag (the patroni role sets it)
    sync_standby: str | None = None  # streaming synchronous standby
    members: tuple[str, ...] = ()
    unknown_because: str = ""  # short and stable: it goes into the watchdog's sentence
    errors: tuple[str, ...] = ()  # what each URL said, for logs and events

    @property
    def known(self) -> bool:
        return self.answered_by is not None

    @property
    def no_primary(self) -> bool:
        """Patroni answered and no member holds the leader key: a failover is in progress."""
        return self.known and self.primary is None

    def describe(self) -> str:
        if not self.known:
            return f"PostgreSQL unknown ({self.unknown_because})"
        if self.primary is None:
            return "PostgreSQL has no primary (failover in progress)"
        where = f" ({self.primary_site})" if self.primary_site else ""
        sync = (f"sync standby {self.sync_standby}" if self.sync_standby
                else "no sync standby")
        return f"PostgreSQL primary {self.primary}{where}, {sync}"

    def as_details(self) -> dict[str, Any]:
        """JSON for the watchdog's events."""
        return {"known": self.known, "primary": self.primary, "primary_site": self.primary_site,
                "sync_standby": self.sync_standby, "members": list(self.members),
                "answered_by": self.answered_by,
                "unknown_because": None if self.known else self.unknown_because}


NOT_CONFIGURED = PgState(unknown_because="no Patroni URL configured")


def from_cluster(url: str, cluster: PatroniCluster) -> PgState:
    site = next((m.site for m in cluster.members if m.name == cluster.primary), None)
    return PgState(answered_by=url, primary=cluster.primary, primary_site=site,
                   sync_standby=cluster.sync_standby,
                   members=tuple(sorted(m.name for m in cluster.members)))


class PostgresView(Protocol):
    """Where the watchdog reads PostgreSQL's state from. ``read`` never raises: what could not
    be read is an unknown :class:`PgState`; it returns within a bounded time."""

    async def read(self) -> PgState: ...


class PatroniRestView:
    """:class:`PostgresView` on Patroni's REST API (``GET <url>/cluster``)."""

    def __init__(self, urls: Sequence[str], timeout_s: float = READ_TIMEOUT_S,
                 tls: ssl.SSLContext | None = None) -> None:
        self.urls = tuple(u.rstrip("/") for u in urls)
        self.timeout_s = timeout_s
        self.tls = tls  # verifies https Patroni APIs (the cluster's CA)

    async def read(self) -> PgState:
        if not self.urls:
            return NOT_CONFIGURED
        errors: dict[str, str] = {}
        # One session per reading: the watchdog leader reads once per cycle, and nothing is left
        # open between cycles (no owner to close it at shutdown).
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        connector = aiohttp.TCPConnector(ssl=self.tls if self.tls is not None else True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            tasks = [asyncio.create_task(self._one(session, u), name=f"patroni {u}")
                     for u in self.urls]
            try:
                for first in asyncio.as_completed(tasks):
                    url, cluster, error = await first
                    if cluster is not None:
                        return from_cluster(url, cluster)
                    errors[url] = error
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        said = tuple(f"{u}: {errors.get(u, 'no answer')}" for u in self.urls)
        log.debug("no Patroni answered: %s", "; ".join(said))
        return PgState(unknown_because="no Patroni answered", errors=said)

    async def _one(self, session: aiohttp.ClientSession,
                   url: str) -> tuple[str, PatroniCluster | None, str]:
        """(url, cluster view, "") or (url, None, what went wrong); never raises but cancelled."""
        try:
            async with session.get(f"{url}/cluster") as resp:  # the session's total timeout
                if resp.status != 200:
                    return url, None, f"HTTP {resp.status}"
                return url, parse_cluster(await resp.json(content_type=None)), ""
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            return url, None, f"no answer within {self.timeout_s:g} s"
        except Exception as exc:  # refused, reset, not JSON, not a cluster view: no answer
            return url, None, f"{type(exc).__name__}: {exc}"
