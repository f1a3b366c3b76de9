"""Connection strings and the application database (role ``tenir``, database ``tenir``)."""

from __future__ import annotations

import psycopg
from psycopg import sql

APP_USER = "tenir"
APP_DB = "tenir"
# A node cut off in the middle of a transaction leaves it open on the server, holding the row
# locks of a claimed batch (SKIP LOCKED then hides that batch from every other node). The
# server ends such a session after this long; the store's transactions are milliseconds long.
APP_IDLE_IN_TRANSACTION_TIMEOUT = "10s"


def dsn(host: str, port: int, user: str, password: str, dbname: str,
        connect_timeout: int = 3) -> str:
    return psycopg.conninfo.make_conninfo(
        host=host, port=port, user=user, password=password, dbname=dbname,
        connect_timeout=connect_timeout, application_name="tenir",
    )


def ensure_app_database(superuser_dsn: str, app_password: str) -> bool:
    """Create the application role and database if missing (and reset the role's password).
    Returns True when something was created. Idempotent."""
    created = False
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_USER,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(APP_USER), sql.Literal(app_password)))
            created = True
        else:
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(APP_USER), sql.Literal(app_password)))
        conn.execute(sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = {}").format(
            sql.Identifier(APP_USER), sql.Literal(APP_IDLE_IN_TRANSACTION_TIMEOUT)))
        db = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (APP_DB,)).fetchone()
        if db is None:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(APP_DB), sql.Identifier(APP_USER)))
            created = True
    return created
