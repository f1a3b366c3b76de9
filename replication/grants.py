"""What the application role may do, granted by the schema owner after each migration run.

Two roles (replication/appdb.py): the *owner* owns the database, its schema and every table and
runs the migrations (``tenir db migrate``); the *application* role (the alert nodes' DSN) gets
DML only: it cannot create, alter or drop anything, and on the continuity ledger and its
checkpoints it may only SELECT and INSERT (the triggers of migration 0005 refuse UPDATE, DELETE
and TRUNCATE to the owner as well). ``ledger_head`` is reached only through the ledger's
SECURITY DEFINER trigger; ``schema_migrations`` and the ``events`` view are read-only.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

APPEND_ONLY = ("ledger", "ledger_checkpoints")
READ_ONLY = ("schema_migrations", "events")
HIDDEN = ("ledger_head",)


async def grant_app(conn: psycopg.AsyncConnection[Any], app_role: str) -> None:
    """Idempotent; run by the owner (autocommit or not) after the migrations."""
    role = sql.Identifier(app_role)
    cur = await conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'p')")
    tables = sorted(str(r[0]) for r in await cur.fetchall())
    await conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
        sql.Identifier(conn.info.dbname), role))
    await conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
    await conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(role))
    for table in tables:
        ident = sql.Identifier(table)
        await conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(ident, role))
        if table in HIDDEN:
            continue
        if table in READ_ONLY:
            privileges = sql.SQL("SELECT")
        elif table in APPEND_ONLY:
            privileges = sql.SQL("SELECT, INSERT")
        else:
            privileges = sql.SQL("SELECT, INSERT, UPDATE, DELETE")
        await conn.execute(sql.SQL("GRANT {} ON {} TO {}").format(privileges, ident, role))
    await conn.execute(sql.SQL(
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(role))
