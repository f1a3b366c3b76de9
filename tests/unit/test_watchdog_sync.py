"""The watchdog's leader records when PostgreSQL loses and regains its synchronous standby:
the continuity report adds up the time between as the RPO exposure."""

from __future__ import annotations

import dataclasses

import pytest

from tests.unit.test_watchdog import (
    NO_PRIMARY,
    PRIMARY_MARSEILLE,
    PRIMARY_PARIS,
    FakePostgres,
    _lab,
    _watchdogs,
)

pytestmark = pytest.mark.unit


@pytest.mark.asyncio
async def test_the_leader_records_when_postgresql_loses_and_regains_its_sync_copy() -> None:
    _, store, (paris, marseille), _ = await _lab()
    postgres = FakePostgres(PRIMARY_PARIS)
    w1, _ = _watchdogs(store, paris, marseille, postgres)
    await w1.cycle()
    assert store.events == []  # a synchronous copy from the start: nothing to say
    postgres.state = PRIMARY_MARSEILLE  # promoted, its standby gone
    await w1.cycle()
    await w1.cycle()
    postgres.state = NO_PRIMARY  # unknown sync state: not a change
    await w1.cycle()
    postgres.state = dataclasses.replace(PRIMARY_MARSEILLE, sync_standby="paris-db")
    await w1.cycle()
    assert [e.kind for e in store.events] == ["postgres.sync_lost", "postgres.sync_restored"]
    assert "no synchronous standby" in store.events[0].sentence
    assert store.events[1].details["postgres"]["sync_standby"] == "paris-db"


@pytest.mark.asyncio
async def test_a_ledger_that_cannot_be_written_does_not_stop_the_cycle() -> None:
    _, store, (paris, marseille), _ = await _lab()
    postgres = FakePostgres(PRIMARY_MARSEILLE)  # no synchronous standby
    w1, _ = _watchdogs(store, paris, marseille, postgres)
    real = store.record_event

    async def broken(*args: object, **kwargs: object) -> int:
        raise ConnectionError("ledger unreachable")

    store.record_event = broken  # type: ignore[method-assign]
    assert "nothing to move" in await w1.cycle()
    store.record_event = real  # type: ignore[method-assign]
    await w1.cycle()  # said at the next cycle
    assert [e.kind for e in store.events] == ["postgres.sync_lost"]
