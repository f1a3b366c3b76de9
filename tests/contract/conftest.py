"""The store contract suite runs every test twice: against the in-memory fake of the unit tests
(``memory``, marked unit) and against the PostgreSQL store on a throwaway server
(``postgres``, marked integration), so that the fake is held to the real thing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from replication.store import PgCampaignStore
from replication.store_api import CampaignStore
from tests.fakes.memory_store import MemoryStore
from tests.integration.conftest import db_dsn, pg_server, template_db

__all__ = ["db_dsn", "pg_server", "template_db"]  # the throwaway PostgreSQL's fixtures


@pytest.fixture(params=[pytest.param("memory", marks=pytest.mark.unit),
                        pytest.param("postgres", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> str | None:
    """None for the fake; the DSN of a fresh migrated database for PostgreSQL (resolved here,
    outside the event loop: the template database is built with asyncio.run)."""
    if request.param == "memory":
        return None
    dsn: str = request.getfixturevalue("db_dsn")
    return dsn


@pytest_asyncio.fixture
async def store(backend: str | None) -> AsyncIterator[CampaignStore]:
    if backend is None:
        yield MemoryStore()
        return
    pg = await PgCampaignStore.open(backend, min_size=1, max_size=4)
    try:
        yield pg
    finally:
        await pg.close()
