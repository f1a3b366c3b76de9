"""The continuity ledger on a real PostgreSQL 15: two roles, append-only for both, one chain
under concurrent appends, the same bytes as the offline verifier, events folded in."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

from failover.evidence.entry import GENESIS_PREV
from failover.evidence.pg_ledger import PgLedger
from replication.appdb import ensure_app_database
from replication.migrate import _apply, load_migrations, migrate
from replication.store import PgCampaignStore
from tests.integration.pgserver import PgServer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
_n = itertools.count(1)


@dataclass(frozen=True)
class Roles:
    owner_dsn: str
    app_dsn: str
    app: str


@pytest.fixture
def roles(pg_server: PgServer) -> Iterator[Roles]:
    """A database owned by its own owner role, migrated by it, and its application role."""
    n = next(_n)
    owner, app, db = f"t_owner_{n}", f"t_app_{n}", f"t_ledger_{n}"
    ensure_app_database(pg_server.dsn(), "x" * 16, "y" * 16, app_user=app, owner_user=owner,
                        dbname=db)
    base = pg_server.dsn(db)
    r = Roles(psycopg.conninfo.make_conninfo(base, user=owner),
              psycopg.conninfo.make_conninfo(base, user=app), app)
    asyncio.run(migrate(r.owner_dsn, app_role=app))
    try:
        yield r
    finally:
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
            for role in (app, owner):
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest_asyncio.fixture(loop_scope="function")
async def app_store(roles: Roles) -> AsyncIterator[PgCampaignStore]:
    s = await PgCampaignStore.open(roles.app_dsn, min_size=1, max_size=8, require_schema=True)
    try:
        yield s
    finally:
        await s.close()


async def _refused(dsn: str, statement: str) -> psycopg.Error:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as info:
            await conn.execute(statement.encode())
    return info.value


async def test_the_application_role_can_only_append_and_read(
        roles: Roles, app_store: PgCampaignStore) -> None:
    seq = await app_store.record_event("operator.drain", "site paris drained", "paris-node1",
                                       "paris", actor="operator:abc123")
    assert seq == 1  # after the ledger's opening entry
    for statement in ("UPDATE ledger SET payload = '\\x7b7d'", "DELETE FROM ledger",
                      "TRUNCATE ledger", "UPDATE ledger_checkpoints SET note = ''",
                      "DELETE FROM ledger_checkpoints", "TRUNCATE ledger_checkpoints",
                      "SELECT * FROM ledger_head", "UPDATE ledger_head SET size = 0",
                      "ALTER TABLE ledger DISABLE TRIGGER ledger_append_only",
                      "DROP TABLE ledger", "CREATE TABLE mine (x int)",
                      "DELETE FROM schema_migrations", "DELETE FROM events"):
        err = await _refused(roles.app_dsn, statement)
        assert isinstance(err, psycopg.errors.InsufficientPrivilege), (statement, err)
    events = await app_store.list_events()
    assert (events[0].id, events[0].kind, events[0].actor) == (1, "operator.drain",
                                                               "operator:abc123")


async def test_the_owner_cannot_rewrite_the_ledger_either(roles: Roles,
                                                          app_store: PgCampaignStore) -> None:
    await app_store.record_event("watchdog.move", "moved", "marseille-node1", "marseille")
    for statement in ("UPDATE ledger SET payload = payload", "DELETE FROM ledger WHERE seq = 1",
                      "TRUNCATE ledger", "DELETE FROM ledger_checkpoints",
                      "DELETE FROM ledger_head"):
        err = await _refused(roles.owner_dsn, statement)
        assert err.sqlstate == "TN005", (statement, err)
        assert "append-only" in str(err)


async def test_a_forged_insert_is_chained_by_the_database_not_by_the_client(
        roles: Roles, app_store: PgCampaignStore) -> None:
    async with await psycopg.AsyncConnection.connect(roles.app_dsn, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO ledger (seq, at, at_us, kind, payload, doc, prev_hash, entry_hash)"
            " VALUES (99, now(), 0, 'forged', %s, '{}', %s, %s)",
            (b'{"kind":"operator.note","actor":"x"}', b"\x01" * 32, b"\x02" * 32))
    ledger = PgLedger(app_store.pool)
    entries = await ledger.entries(0, 100)
    assert [e.seq for e in entries] == [0, 1]
    assert entries[1].kind == "operator.note" and entries[1].prev == entries[0].hash
    assert entries[1].hash == entries[1].computed_hash


async def test_concurrent_appends_from_many_connections_form_one_chain(
        roles: Roles) -> None:
    stores = [await PgCampaignStore.open(roles.app_dsn, min_size=1, max_size=4)
              for _ in range(4)]
    try:
        async def writer(i: int, s: PgCampaignStore) -> list[int]:
            return [await s.record_event("watchdog.move", f"w{i} n{k}", f"node{i}", "paris")
                    for k in range(40)]

        seqs = await asyncio.gather(*(writer(i, s) for i, s in enumerate(stores)))
        ledger = PgLedger(stores[0].pool)
        entries = await ledger.entries(0, 10_000)
    finally:
        for s in stores:
            await s.close()
    assert sorted(x for chunk in seqs for x in chunk) == list(range(1, 161))
    assert [e.seq for e in entries] == list(range(161))
    prev = GENESIS_PREV
    for e in entries:
        assert e.prev == prev, e.seq
        assert e.hash == e.computed_hash, e.seq
        prev = e.hash
    assert all(a.at_us <= b.at_us for a, b in itertools.pairwise(entries))


async def test_the_migration_folds_earlier_events_into_the_ledger(empty_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        await _apply(conn, load_migrations()[:4])
        await conn.execute(
            "INSERT INTO events (kind, node, site, sentence, details) VALUES"
            " ('watchdog.move', 'marseille-node1', 'marseille', 'moved 2', '{\"moved\": 2}'),"
            " ('operator.drain', 'paris-node1', 'paris', 'drained', '{\"by\": \"operator:f1\"}')")
    assert (await migrate(empty_dsn))[0] == "0005_ledger"  # then the later ones
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT id, kind, node, sentence, details, actor FROM events"
                                 " ORDER BY id")
        rows = await cur.fetchall()
    assert rows[0][1] == "ledger.opened" and "2 earlier events" in rows[0][3]
    assert rows[1][1:] == ("watchdog.move", "marseille-node1", "moved 2", {"moved": 2},
                           "node:marseille-node1")
    assert rows[2][1:] == ("operator.drain", "paris-node1", "drained", {"by": "operator:f1"},
                           "operator:f1")


async def test_a_node_refuses_a_schema_behind_and_names_the_command(empty_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        await _apply(conn, load_migrations()[:4])
    with pytest.raises(Exception, match=r"0005_ledger.*tenir db migrate"):
        await PgCampaignStore.open(empty_dsn, require_schema=True)


async def test_a_database_of_before_the_split_is_handed_to_the_owner(pg_server: PgServer) -> None:
    """Before: the application role owned the database and its tables (it migrated). After
    ensure_app_database and `tenir db migrate`: the owner owns them, the app keeps DML."""
    n = next(_n)
    owner, app, db = f"t_owner_{n}", f"t_app_{n}", f"t_old_{n}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(app)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db),
                                                                   sql.Identifier(app)))
    app_dsn = psycopg.conninfo.make_conninfo(pg_server.dsn(db), user=app)
    try:
        async with await psycopg.AsyncConnection.connect(app_dsn, autocommit=True) as conn:
            await conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(
                sql.Identifier(app)))  # as a PostgreSQL 14 database would have it
            await _apply(conn, load_migrations()[:4])
        ensure_app_database(pg_server.dsn(), "x" * 16, "y" * 16, app_user=app,
                            owner_user=owner, dbname=db)
        owner_dsn = psycopg.conninfo.make_conninfo(pg_server.dsn(db), user=owner)
        assert (await migrate(owner_dsn, app_role=app))[0] == "0005_ledger"
        async with await psycopg.AsyncConnection.connect(app_dsn, autocommit=True) as conn:
            cur = await conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                                     " AND tableowner <> %s", (owner,))
            assert (await cur.fetchone()) == (0,)
            await conn.execute("UPDATE campaigns SET state = state")  # DML kept
        for statement in ("UPDATE ledger SET kind = kind", "ALTER TABLE campaigns ADD x int"):
            err = await _refused(app_dsn, statement)
            assert isinstance(err, psycopg.errors.InsufficientPrivilege), statement
    finally:
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(db)))
            for role in (app, owner):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
