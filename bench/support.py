"""What the benchmarks on a throwaway PostgreSQL share: the database, and saving results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def bench_database(dsn: str | None) -> Iterator[tuple[str, str]]:
    """(DSN, what it is): ``dsn`` as given, else a database on a throwaway PostgreSQL 15 with
    the durable defaults, stopped at the end."""
    if dsn is not None:
        yield dsn, "given DSN"
        return
    from tests.integration.pgserver import start_pg

    server = start_pg(durable=True)
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE tenir_bench")
        yield server.dsn("tenir_bench"), "throwaway server, durable defaults"
    finally:
        server.stop()


def save_results(name: str, data: dict[str, Any]) -> Path:
    out = REPO / "bench" / "results" / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"saved {out.relative_to(REPO)}")
    return out
