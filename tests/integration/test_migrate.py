"""Migrations on a real PostgreSQL: in order, once, idempotent, one node at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from replication.migrate import MigrationError, applied_versions, load_migrations, migrate

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ALL = [m.version for m in load_migrations()]


async def _schema(dsn: str) -> list[tuple[Any, ...]]:
    """Everything the migrations create, and their own bookkeeping."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        rows: list[tuple[Any, ...]] = []
        for q in (
            "SELECT 'table', table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY 2, 3",
            "SELECT 'index', indexname, indexdef, '' FROM pg_indexes"
            " WHERE schemaname = 'public' ORDER BY 2",
            "SELECT 'check', conname, pg_get_constraintdef(oid), '' FROM pg_constraint"
            " WHERE connamespace = 'public'::regnamespace ORDER BY 2",
            "SELECT 'function', proname, md5(prosrc), '' FROM pg_proc"
            " WHERE pronamespace = 'public'::regnamespace ORDER BY 2",
            "SELECT 'applied', version, checksum, applied_at::text FROM schema_migrations"
            " ORDER BY 2",
        ):
            cur = await conn.execute(q.encode())
            rows += await cur.fetchall()
        return rows


async def test_migrations_are_numbered_and_shipped() -> None:
    assert ALL[0] == "0001_campaigns"
    assert sorted(ALL) == ALL and len(ALL) >= 2


async def test_migrate_twice_applies_once_and_changes_nothing(empty_dsn: str) -> None:
    assert await migrate(empty_dsn) == ALL
    before = await _schema(empty_dsn)
    assert any(r[0] == "table" and r[1] == "attempts" for r in before)
    assert await migrate(empty_dsn) == []
    assert await _schema(empty_dsn) == before  # applied_at included: nothing re-applied


async def test_concurrent_migrations_one_applies_the_others_wait(empty_dsn: str) -> None:
    results = await asyncio.gather(*(migrate(empty_dsn) for _ in range(4)))
    assert sorted(results, key=len) == [[], [], [], ALL]
    async with await psycopg.AsyncConnection.connect(empty_dsn) as conn:
        assert await applied_versions(conn) == ALL
        cur = await conn.execute("SELECT count(*) FROM pg_proc WHERE proname = 'tenir_fence'")
        assert await cur.fetchone() == (1,)


async def test_migrate_on_a_given_connection_keeps_its_mode(empty_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_dsn) as conn:
        assert conn.autocommit is False
        assert await migrate(conn) == ALL
        assert conn.autocommit is False
        await conn.execute("SELECT 1")  # now inside a transaction
        with pytest.raises(MigrationError, match="idle"):
            await migrate(conn)
        await conn.rollback()
    async with await psycopg.AsyncConnection.connect(empty_dsn) as conn:
        assert await applied_versions(conn) == ALL  # committed, not left in a transaction


async def test_an_edited_applied_migration_is_refused(empty_dsn: str) -> None:
    await migrate(empty_dsn)
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' "
                           "WHERE version = '0001_campaigns'")
    with pytest.raises(MigrationError, match="0001_campaigns"):
        await migrate(empty_dsn)


async def test_a_failing_migration_leaves_nothing_and_releases_the_lock(
        empty_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import replication.migrate as mod

    real = mod.load_migrations()
    broken = [*real, mod.Migration("9999_broken", "CREATE TABLE half_done (x int); SELECT 1/0;")]
    monkeypatch.setattr(mod, "load_migrations", lambda: broken)
    with pytest.raises(psycopg.errors.DivisionByZero):
        await migrate(empty_dsn)
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        assert await applied_versions(conn) == ALL  # the good ones stay, the broken one is not
        cur = await conn.execute("SELECT to_regclass('half_done')")
        assert await cur.fetchone() == (None,)  # its first statement was rolled back with it
    monkeypatch.setattr(mod, "load_migrations", lambda: real)
    assert await asyncio.wait_for(migrate(empty_dsn), 10) == []  # the lock was released
