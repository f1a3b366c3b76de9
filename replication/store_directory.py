"""The campaign store's directory: contacts, groups and scenarios."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from replication.store_api import Contact, ContactIn, InvalidInput, NotFound, Scenario, ScenarioIn
from replication.store_base import StoreBase
from replication.store_codec import (
    check_name,
    check_page,
    steps_from_json,
    steps_to_json,
    validate_contact,
    validate_scenario,
)

_INSERT_CONTACTS = """
WITH input AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('contacts', 'id')) AS id, u.*
      FROM unnest(%(name)s::text[], %(phone)s::text[], %(mobile)s::text[], %(email)s::text[],
                  %(language)s::text[], %(external_id)s::text[])
           WITH ORDINALITY AS u(name, phone, mobile, email, language, external_id, ord)
), ins AS (
    INSERT INTO contacts (id, name, phone, mobile, email, language, external_id)
    SELECT id, name, phone, mobile, email, language, external_id FROM input
)
INSERT INTO group_members (group_id, contact_id)
SELECT DISTINCT g.id, input.id
  FROM unnest(%(m_ord)s::bigint[], %(m_group)s::text[]) AS m(ord, name)
  JOIN input ON input.ord = m.ord
  JOIN groups g ON g.name = m.name
"""

def _scenario(row: tuple[Any, ...]) -> Scenario:
    return Scenario(id=int(row[0]), name=str(row[1]), priority=int(row[2]),
                    steps=steps_from_json(row[3]))


# Rows per insert statement: psycopg encodes each statement's arrays on the event loop, and
# 10,000 rows take tens of milliseconds where 100,000 took half a second.
INSERT_CHUNK = 10_000


def _check(contacts: Sequence[ContactIn]) -> dict[str, int]:
    """Every contact checked (InvalidInput names the line, from 1); the line of each external
    id."""
    seen_ids: dict[str, int] = {}
    for line, c in enumerate(contacts, start=1):
        validate_contact(line, c)
        if c.external_id is not None:
            if c.external_id in seen_ids:
                raise InvalidInput(f"line {line}", f"external_id {c.external_id!r} repeats "
                                   f"line {seen_ids[c.external_id]}")
            seen_ids[c.external_id] = line
    return seen_ids


def _columns(contacts: Sequence[ContactIn]) -> dict[str, list[Any]]:
    """The columns of one insert statement (group memberships by position in ``contacts``)."""
    cols: dict[str, list[Any]] = {k: [] for k in
                                  ("name", "phone", "mobile", "email", "language",
                                   "external_id", "m_ord", "m_group")}
    for ordinal, c in enumerate(contacts, start=1):
        cols["name"].append(c.name.strip())
        cols["phone"].append(c.phone)
        cols["mobile"].append(c.mobile)
        cols["email"].append(c.email)
        cols["language"].append(c.language)
        cols["external_id"].append(c.external_id)
        for g in c.groups:
            cols["m_ord"].append(ordinal)
            cols["m_group"].append(g.strip())
    return cols


class DirectoryPart(StoreBase):
    async def add_contacts(self, contacts: Sequence[ContactIn]) -> int:
        """Add contacts; returns how many. Validates every line first (InvalidInput names the
        line, counted from 1). Groups named by a contact are created if missing. An external_id
        already known (or repeated in the input) is refused: nothing is stored."""
        if not contacts:
            return 0
        # 100,000 rows take about half a second to check: not on the event loop.
        seen_ids = await asyncio.to_thread(_check, contacts)
        groups = sorted({g.strip() for c in contacts for g in c.groups})
        async with self._tx() as conn:
            if seen_ids:
                cur = await conn.execute(
                    "SELECT external_id FROM contacts WHERE external_id = ANY(%s::text[])",
                    (list(seen_ids),))
                taken = await cur.fetchone()
                if taken is not None:
                    raise InvalidInput(f"line {seen_ids[taken[0]]}",
                                       f"external_id {taken[0]!r} already exists")
            if groups:
                await conn.execute(
                    "INSERT INTO groups (name) SELECT DISTINCT unnest(%s::text[]) "
                    "ON CONFLICT (name) DO NOTHING", (groups,))
            for start in range(0, len(contacts), INSERT_CHUNK):
                chunk = contacts[start:start + INSERT_CHUNK]
                cols = await asyncio.to_thread(_columns, chunk)
                try:
                    await conn.execute(_INSERT_CONTACTS, cols)
                except (psycopg.errors.CheckViolation, psycopg.errors.UniqueViolation) as e:
                    raise InvalidInput("contacts", e.diag.message_primary or str(e)) from None
        return len(contacts)

    async def list_contacts(self, limit: int = 100, offset: int = 0) -> list[Contact]:
        check_page(limit, offset)
        async with self._tx() as conn:
            cur = await conn.execute(
                """
                SELECT c.id, c.name, c.phone, c.mobile, c.email, c.language, c.external_id,
                       coalesce(array_agg(g.name ORDER BY g.name)
                                FILTER (WHERE g.name IS NOT NULL), '{}')
                  FROM (SELECT * FROM contacts ORDER BY id LIMIT %s OFFSET %s) c
                  LEFT JOIN group_members m ON m.contact_id = c.id
                  LEFT JOIN groups g ON g.id = m.group_id
                 GROUP BY c.id, c.name, c.phone, c.mobile, c.email, c.language, c.external_id
                 ORDER BY c.id""", (limit, offset))
            rows = await cur.fetchall()
        return [Contact(id=r[0], name=r[1], phone=r[2], mobile=r[3], email=r[4], language=r[5],
                        external_id=r[6], groups=tuple(r[7])) for r in rows]

    async def erase_contact(self, contact_id: int) -> int:
        """Delete the contact and blank the recipients copied from it (migrations/0007);
        returns how many recipients were blanked. NotFound for an unknown contact."""
        if isinstance(contact_id, bool) or not isinstance(contact_id, int) or contact_id < 1:
            raise InvalidInput("contact_id", "must be a positive integer")
        async with self._statement() as conn:
            cur = await conn.execute("SELECT tenir_erase_contact(%s)", (contact_id,))
            row = await cur.fetchone()
        if row is None or row[0] is None:
            raise NotFound(f"contact {contact_id}")
        return int(row[0])

    async def create_group(self, name: str) -> None:
        """Create an empty group; an existing name is refused (InvalidInput 'name')."""
        name = check_name("name", name)
        async with self._tx() as conn:
            cur = await conn.execute(
                "INSERT INTO groups (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (name,))
            if cur.rowcount == 0:
                raise InvalidInput("name", f"group {name!r} already exists")

    async def list_groups(self) -> dict[str, int]:
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT g.name, count(m.contact_id) FROM groups g "
                "LEFT JOIN group_members m ON m.group_id = g.id GROUP BY g.name ORDER BY g.name")
            return {str(n): int(c) for n, c in await cur.fetchall()}

    async def create_scenario(self, scenario: ScenarioIn) -> Scenario:
        """Store a scenario; its name must be new (InvalidInput 'name'). Scenarios are not
        edited afterwards: campaigns refer to them."""
        validate_scenario(scenario)
        name = scenario.name.strip()
        async with self._tx() as conn:
            cur = await conn.execute(
                "INSERT INTO scenarios (name, priority, steps) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO NOTHING RETURNING id, name, priority, steps",
                (name, scenario.priority, Jsonb(steps_to_json(scenario.steps))))
            row = await cur.fetchone()
        if row is None:
            raise InvalidInput("name", f"scenario {name!r} already exists")
        return _scenario(row)

    async def get_scenario(self, name: str) -> Scenario:
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT id, name, priority, steps FROM scenarios WHERE name = %s", (name,))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"scenario {name!r} not found")
        return _scenario(row)

    async def list_scenarios(self) -> list[Scenario]:
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT id, name, priority, steps FROM scenarios ORDER BY name")
            return [_scenario(r) for r in await cur.fetchall()]

