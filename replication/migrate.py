"""Schema migrations of the campaign store.

The numbered files ``replication/migrations/NNNN_name.sql`` are applied in order, each in its own
transaction together with its row in ``schema_migrations`` (version, checksum, applied_at). The
whole run holds a session-level ``pg_advisory_lock``, so that alert nodes starting at once apply
them one at a time: the first applies, the others wait and then find nothing left to do.
Running it again changes nothing. An applied file whose content changed since is refused
(migrations are immutable once applied: add a new one instead).

The files are package data, read with :mod:`importlib.resources`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

# Any fixed 64-bit key; "tenir-mg" in ASCII.
MIGRATION_LOCK_KEY = 0x74656E69722D6D67
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: str  # the file name without ".sql", e.g. "0001_campaigns"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The shipped migrations, in order. Refuses two files with the same number."""
    folder = resources.files("replication").joinpath("migrations")
    found: dict[str, Migration] = {}
    for entry in folder.iterdir():
        m = _FILE.match(entry.name)
        if m is None:
            continue
        number = m.group(1)
        if number in found:
            raise MigrationError(f"two migrations numbered {number}: "
                                 f"{found[number].version} and {entry.name}")
        found[number] = Migration(entry.name.removesuffix(".sql"),
                                  entry.read_text(encoding="utf-8"))
    if not found:
        raise MigrationError(f"no migration found in {folder}")
    return [found[n] for n in sorted(found)]


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


async def _apply(conn: psycopg.AsyncConnection[Any], migrations: list[Migration]) -> list[str]:
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        await conn.execute(_CREATE_TABLE)
        cur = await conn.execute("SELECT version, checksum FROM schema_migrations")
        done = {str(v): str(c) for v, c in await cur.fetchall()}
        for mig in migrations:
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version} was applied with another content "
                        "(checksum differs): add a new migration instead of editing it")
                continue
            async with conn.transaction():
                await conn.execute(mig.sql.encode())  # no parameters: several statements
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                    (mig.version, mig.checksum))
            applied_now.append(mig.version)
    finally:
        # A lost session has released its lock already: do not hide the first error.
        with contextlib.suppress(psycopg.OperationalError):
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


async def migrate(conn_or_dsn: str | psycopg.AsyncConnection[Any],
                  app_role: str | None = None) -> list[str]:
    """Apply the migrations not applied yet; return the versions applied by this call.

    Run it as the schema owner (``tenir db migrate``). With ``app_role``, the application role
    is then granted what it may do (``replication/grants.py``), every time: a new table of a
    migration is covered at once.

    Given a DSN, opens (and closes) its own connection. Given a connection, it must be idle (not
    inside a transaction); it is switched to autocommit for the run and switched back after.
    """
    migrations = load_migrations()
    if isinstance(conn_or_dsn, str):
        async with await psycopg.AsyncConnection.connect(conn_or_dsn, autocommit=True) as conn:
            return await _apply_and_grant(conn, migrations, app_role)
    conn = conn_or_dsn
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise MigrationError("migrate() needs an idle connection, not one inside a transaction")
    was_autocommit = conn.autocommit
    if not was_autocommit:
        await conn.set_autocommit(True)
    try:
        return await _apply_and_grant(conn, migrations, app_role)
    finally:
        if not was_autocommit:
            await conn.set_autocommit(False)


async def _apply_and_grant(conn: psycopg.AsyncConnection[Any], migrations: list[Migration],
                           app_role: str | None) -> list[str]:
    applied = await _apply(conn, migrations)
    if app_role is not None:
        from replication.grants import grant_app

        await grant_app(conn, app_role)
    return applied


class SchemaBehind(MigrationError):
    """The database lacks migrations this code needs: the owner must run ``tenir db migrate``."""


async def check_schema(conn: psycopg.AsyncConnection[Any]) -> None:
    """Raise :class:`SchemaBehind` unless every shipped migration is applied (what an alert
    node checks at start: it runs as the application role, which cannot migrate)."""
    have = set(await applied_versions(conn))
    missing = [m.version for m in load_migrations() if m.version not in have]
    if missing:
        raise SchemaBehind(f"the database lacks migration(s) {', '.join(missing)}: run "
                           "'tenir db migrate --owner-dsn DSN' as the schema owner first")


async def applied_versions(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """The versions recorded in schema_migrations, in order (empty before the first run)."""
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return []
    cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
    return [str(r[0]) for r in await cur.fetchall()]
