"""What the parts of the PostgreSQL campaign store share: the pool and one-transaction access."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from replication.store_api import InvalidInput, NotFound

Conn = psycopg.AsyncConnection[Any]

# Custom SQLSTATEs raised by the functions of migrations/0002.
SQLSTATE_NO_BATCH = "TN002"
SQLSTATE_OUTSIDE_BATCH = "TN003"
SQLSTATE_BAD_ARRAYS = "TN004"


class StoreBase:
    """Holds the pool. Every public method of the store runs in one transaction: one statement
    committed by the server (``_statement``) or a block of them (``_tx``)."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        return self._pool

    @asynccontextmanager
    async def _statement(self) -> AsyncIterator[Conn]:
        """A pooled connection for ONE statement, which the server commits as it ends (the pool
        hands out autocommit connections): no client round trip happens while the statement's
        locks are held. Inside ``_tx``, a client cut off between the statement and its COMMIT
        would keep its transaction open, and its locks (the campaign row every finish_batch
        takes) would stall every node until the server noticed (idle_in_transaction timeout)."""
        async with self._pool.connection() as conn:
            if conn.autocommit:
                yield conn
            else:
                async with conn.transaction():
                    yield conn

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Conn]:
        """A pooled connection inside one transaction: committed when the block ends, rolled
        back if it raises. Works whether the pool hands out autocommit connections or not."""
        async with self._pool.connection() as conn, conn.transaction():
            yield conn


def db_error(e: psycopg.Error, field: str = "outcomes") -> Exception:
    """The store_api error for a refusal raised by our server-side functions, else ``e``."""
    state = e.sqlstate
    message = e.diag.message_primary or str(e)
    if state == SQLSTATE_NO_BATCH:
        return NotFound(message)
    if state in (SQLSTATE_OUTSIDE_BATCH, SQLSTATE_BAD_ARRAYS):
        return InvalidInput(field, message)
    if isinstance(e, psycopg.errors.CheckViolation | psycopg.errors.NotNullViolation
                  | psycopg.errors.UniqueViolation | psycopg.errors.CardinalityViolation):
        return InvalidInput(field, message)
    return e
