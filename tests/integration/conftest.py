"""Integration tests of the campaign store against a REAL PostgreSQL 15 on 127.0.0.1.

One throwaway server per session (``pg_server``); every test gets its own database: ``db_dsn``
is a copy of a template database with the migrations applied (CREATE DATABASE ... TEMPLATE),
``empty_dsn`` an empty one (for the migration tests). Nothing is skipped: a missing binary or a
server that does not start fails the session with the reason and the server's log.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from replication.migrate import migrate
from replication.store import PgCampaignStore
from tests.integration.pgserver import PgServer, PgServerError, start_pg
from tests.integration.relay import CuttingRelay

TEMPLATE_DB = "tenir_template"
_numbers = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # in case a module forgets its pytestmark
        if "tests/integration/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = start_pg()
    except PgServerError as e:
        pytest.fail(f"cannot start the throwaway PostgreSQL 15: {e}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def _admin(server: PgServer) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(server.dsn(), autocommit=True)


def _create_db(server: PgServer, name: str, template: str) -> None:
    with _admin(server) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)))


def _drop_db(server: PgServer, name: str) -> None:
    with _admin(server) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> str:
    """A database with every migration applied, copied by each test that wants a schema."""
    _create_db(pg_server, TEMPLATE_DB, "template0")
    applied = asyncio.run(migrate(pg_server.dsn(TEMPLATE_DB)))
    assert applied, "the template database got no migration"
    return TEMPLATE_DB


@pytest.fixture
def db_dsn(pg_server: PgServer, template_db: str) -> Iterator[str]:
    name = f"t_store_{next(_numbers)}"
    _create_db(pg_server, name, template_db)
    try:
        yield pg_server.dsn(name)
    finally:
        _drop_db(pg_server, name)


@pytest.fixture
def empty_dsn(pg_server: PgServer) -> Iterator[str]:
    name = f"t_empty_{next(_numbers)}"
    _create_db(pg_server, name, "template0")
    try:
        yield pg_server.dsn(name)
    finally:
        _drop_db(pg_server, name)


@pytest_asyncio.fixture(loop_scope="function")
async def store(db_dsn: str) -> AsyncIterator[PgCampaignStore]:
    s = await PgCampaignStore.open(db_dsn, min_size=1, max_size=12)
    try:
        yield s
    finally:
        await s.close()


@pytest_asyncio.fixture(loop_scope="function")
async def sql_conn(db_dsn: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    """A raw autocommit connection to the test's database, to look behind the store."""
    conn = await psycopg.AsyncConnection.connect(db_dsn, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


@pytest_asyncio.fixture(loop_scope="function")
async def relay(db_dsn: str) -> AsyncIterator[tuple[CuttingRelay, str]]:
    """A relay to the test's database that can cut the link (``relay.py``), and the DSN
    through it."""
    params = conninfo_to_dict(db_dsn)
    r = CuttingRelay(str(params.get("host", "127.0.0.1")), int(params.get("port", 5432)))
    port = await r.start()
    try:
        yield r, make_conninfo(db_dsn, host="127.0.0.1", port=port, connect_timeout=2)
    finally:
        await r.close()
