"""The campaign store on PostgreSQL: :class:`PgCampaignStore` implements
:class:`replication.store_api.CampaignStore` with psycopg 3 (async) over a connection pool.

The schema and its server-side functions are in ``replication/migrations`` (applied by
``replication.migrate.migrate``). The implementation is split by concern:

* ``store_directory``: contacts, groups, scenarios;
* ``store_launch``: streaming launches (the first chunk claimable at once, recipients generated
  by ``INSERT ... SELECT``);
* ``store_campaigns``: state transitions, summaries, per-recipient outcomes;
* ``store_dispatch``: claims (``FOR UPDATE SKIP LOCKED``), fenced writes refused by the database,
  receipts and acknowledgements (see its docstring for the conventions the dispatcher relies on);
* ``store_codec``: validation and encoding; ``store_base``: the pool and transactions.

Usage::

    store = await PgCampaignStore.open(dsn)   # or PgCampaignStore(existing_pool)
    try:
        campaign_id = await store.launch_campaign("flood", "prefecture", population=100_000)
    finally:
        await store.close()
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg_pool.base
import psycopg_pool.pool_async
from psycopg_pool import AsyncConnectionPool

from replication.migrate import check_schema, migrate
from replication.store_api import CampaignStore
from replication.store_campaigns import CampaignPart
from replication.store_directory import DirectoryPart
from replication.store_dispatch import DispatchPart
from replication.store_events import EventsPart
from replication.store_launch import LaunchPart


class _SteadyRetry(psycopg_pool.base.AttemptWithBackoff):
    """Reconnect every second, not with exponential backoff."""

    DELAY_BACKOFF = 1.0


# psycopg_pool retries a lost connection after 1, 2, 4, 8, 16 s...: after a PostgreSQL failover
# of about 20 s its next attempt came about 10 s after the new primary was writable (measured by
# bench/failover_resume.py). An alert platform wants its database back as soon as it answers;
# the pool takes its retry policy from this module-level name (psycopg_pool 3.3, pinned).
psycopg_pool.pool_async.AttemptWithBackoff = _SteadyRetry  # type: ignore[attr-defined]


class PgCampaignStore(DirectoryPart, LaunchPart, CampaignPart, DispatchPart, EventsPart):
    """Every method is one transaction on a pooled connection (see store_api's contract)."""

    def __init__(self, pool: AsyncConnectionPool[Any], *, owns_pool: bool = False) -> None:
        super().__init__(pool)
        self._owns_pool = owns_pool

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 2, max_size: int = 10,
                   apply_migrations: bool = False, require_schema: bool = False,
                   connect_s: float = 30.0) -> PgCampaignStore:
        """Open a pool on ``dsn`` (autocommit connections; each method sets its transaction),
        optionally applying the migrations first (a DSN of the schema owner) or checking that
        every migration is applied (``require_schema``: an alert node's application role, which
        cannot migrate; raises ``SchemaBehind``). ``close()`` closes that pool."""
        if apply_migrations:
            await migrate(dsn)
        elif require_schema:
            async with await psycopg.AsyncConnection.connect(
                    dsn, autocommit=True, connect_timeout=int(max(1, connect_s))) as conn:
                await check_schema(conn)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn, min_size=min_size, max_size=max_size, open=False, timeout=connect_s,
            kwargs={"autocommit": True}, name="tenir-store")
        await pool.open(wait=True, timeout=connect_s)
        return cls(pool, owns_pool=True)

    async def close(self) -> None:
        """Close the pool if this store opened it (a pool handed in belongs to the caller)."""
        if self._owns_pool:
            await self._pool.close()

    async def __aenter__(self) -> PgCampaignStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _conforms(store: PgCampaignStore) -> CampaignStore:
    return store  # mypy checks here that PgCampaignStore implements the Protocol


__all__ = ["PgCampaignStore"]
