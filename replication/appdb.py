"""Connection strings, and the two roles and the database of the application.

* ``tenir_owner`` owns the database ``tenir``, its schema and every table: it runs the
  migrations (``tenir db migrate --owner-dsn``), never the alert nodes.
* ``tenir`` is the alert nodes' role: DML only, granted by the owner after each migration run
  (``replication/grants.py``); on the continuity ledger, SELECT and INSERT only.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

APP_USER = "tenir"
OWNER_USER = "tenir_owner"
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


def _ensure_role(conn: psycopg.Connection[tuple[object, ...]], role: str,
                 password: str) -> bool:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = "ALTER" if exists is not None else "CREATE"
    conn.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                         "NOREPLICATION NOBYPASSRLS PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(password)))
    return exists is None


def ensure_app_database(superuser_dsn: str, app_password: str, owner_password: str, *,
                        app_user: str = APP_USER, owner_user: str = OWNER_USER,
                        dbname: str = APP_DB) -> bool:
    """Create the owner and application roles and the database if missing (and reset the
    roles' passwords). A database of an earlier version, owned by the application role with
    its tables, is handed to the owner (``REASSIGN OWNED``). Returns True when something was
    created. Idempotent; needs a superuser."""
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        created = _ensure_role(conn, owner_user, owner_password)
        created = _ensure_role(conn, app_user, app_password) or created
        conn.execute(sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = {}").format(
            sql.Identifier(app_user), sql.Literal(APP_IDLE_IN_TRANSACTION_TIMEOUT)))
        db = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if db is None:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(dbname), sql.Identifier(owner_user)))
            created = True
    with psycopg.connect(psycopg.conninfo.make_conninfo(superuser_dsn, dbname=dbname),
                         autocommit=True) as conn:
        # What the application role still owns (a database of before the split) goes to the
        # owner; the public schema too, so the application cannot create in it.
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(
            sql.Identifier(app_user), sql.Identifier(owner_user)))
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(dbname), sql.Identifier(owner_user)))
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(
            sql.Identifier(owner_user)))
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    return created
