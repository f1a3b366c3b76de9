"""The campaign store's launches, streamed (migrations/0008): the campaign and a first chunk of
recipients and batches in one transaction, claimable at once; then one transaction per chunk.

A chunk holds whole batches (a multiple of the batch size, the last one excepted). A
population's recipients are generated in SQL from their position (nothing crosses the wire,
memory stays flat at any size); a group's are read in contact-id order after the last one
written (a keyset), so each chunk reads the group as it is then: a contact added to the group
during the launch is included if its id comes after the cursor. Every chunk ends by moving
the campaign's counter and heartbeat, and only while the launch is still (writing, this node):
a writer whose launch was failed behind its back rolls its chunk back (``LaunchStopped``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

from replication.store_api import (
    InvalidInput,
    LaunchCursor,
    LaunchStopped,
    StalledLaunch,
)
from replication.store_base import Conn, StoreBase
from replication.store_codec import (
    MAX_BATCH_SIZE,
    MAX_POPULATION,
    UnknownName,
    auto_batch_size,
    check_name,
)

MAX_CHUNK = 200_000

# Synthetic population: "Test 000001", +336390000001 (phone and mobile), test-1@example.invalid.
# Positions g0..g1 (1-based) go to batches seq (g - 1) / bs, created by the same statement.
_POPULATION_CHUNK = """
WITH b AS (
    INSERT INTO batches (campaign_id, seq, recipients)
    SELECT %(c)s, s, least(%(bs)s::int, %(n)s::int - s * %(bs)s::int)
      FROM generate_series((%(g0)s::int - 1) / %(bs)s::int, (%(g1)s::int - 1) / %(bs)s::int) AS s
    RETURNING id, seq
)
INSERT INTO recipients (campaign_id, batch_id, name, phone, mobile, email, language)
SELECT %(c)s, b.id,
       'Test ' || CASE WHEN g.n < 1000000 THEN lpad(g.n::text, 6, '0') ELSE g.n::text END,
       '+33639' || lpad(g.n::text, 7, '0'), '+33639' || lpad(g.n::text, 7, '0'),
       'test-' || g.n || '@example.invalid', 'fr'
  FROM generate_series(%(g0)s::int, %(g1)s::int) AS g(n)
  JOIN b ON b.seq = (g.n - 1) / %(bs)s
 ORDER BY g.n
"""

# The group's next contacts after the cursor, in contact order; k is the recipient's 0-based
# position in the campaign (batches are cut on it).
_GROUP_CHUNK = """
WITH s AS (
    SELECT ct.id, ct.name, ct.phone, ct.mobile, ct.email, ct.language,
           %(w)s + row_number() OVER (ORDER BY ct.id) - 1 AS k
      FROM contacts ct JOIN group_members m ON m.contact_id = ct.id
     WHERE m.group_id = %(g)s AND ct.id > %(after)s
     ORDER BY ct.id LIMIT %(lim)s
), b AS (
    INSERT INTO batches (campaign_id, seq, recipients)
    SELECT %(c)s, k / %(bs)s, count(*) FROM s GROUP BY k / %(bs)s
    RETURNING id, seq
), r AS (
    INSERT INTO recipients (campaign_id, batch_id, contact_id, name, phone, mobile, email,
                            language)
    SELECT %(c)s, b.id, s.id, s.name, s.phone, s.mobile, s.email, s.language
      FROM s JOIN b ON b.seq = s.k / %(bs)s
     ORDER BY s.k
    RETURNING contact_id
)
SELECT count(*), coalesce(max(contact_id), %(after)s) FROM r
"""

# The fence and heartbeat of a chunk, last in its transaction (the campaign row is locked only
# from here to the commit: finish_batch takes that lock too).
_ADVANCE = """
UPDATE campaigns SET recipients = recipients + %(k)s, launch_heartbeat = now()
 WHERE id = %(c)s AND launch_state = 'writing' AND launch_node = %(node)s
   AND state <> 'cancelled'
RETURNING recipients
"""


def _count(value: object, field: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise InvalidInput(field, f"must be an integer from 1 to {high}")
    return value


def _chunk_size(chunk: int, batch_size: int) -> int:
    """Whole batches, at least one."""
    _count(chunk, "chunk", MAX_CHUNK)
    return max(1, chunk // batch_size) * batch_size


class LaunchPart(StoreBase):
    async def launch_campaign(
        self, scenario: str, launched_by: str, *, group: str | None = None,
        population: int | None = None, batch_size: int | None = None,
    ) -> int:
        """Every recipient written before returning (tools and tests): a streaming launch
        driven to its end here. If a chunk fails, the launch is failed and the error raised."""
        cursor = await self.start_launch(scenario, launched_by, node=launched_by, group=group,
                                         population=population, batch_size=batch_size,
                                         first=MAX_CHUNK)
        try:
            while not cursor.done:
                cursor = await self.continue_launch(cursor, MAX_CHUNK)
        except BaseException as exc:
            await self.fail_launch(cursor.campaign_id, cursor.node, f"launch failed: {exc!r}")
            raise
        return cursor.campaign_id

    async def start_launch(
        self, scenario: str, launched_by: str, *, node: str, group: str | None = None,
        population: int | None = None, batch_size: int | None = None, first: int = 1000,
    ) -> LaunchCursor:
        """The campaign and its first ``first`` recipients (whole batches), committed together:
        claimable when this returns. An unknown scenario or group raises UnknownName."""
        launched_by = check_name("launched_by", launched_by)
        node = check_name("node", node)
        if (group is None) == (population is None):
            raise InvalidInput("group", "give either a group or a population, exactly one")
        if population is not None:
            _count(population, "population", MAX_POPULATION)
        if batch_size is not None:
            _count(batch_size, "batch_size", MAX_BATCH_SIZE)
        async with self._tx() as conn:
            cur = await conn.execute("SELECT id, priority FROM scenarios WHERE name = %s",
                                     (scenario,))
            srow = await cur.fetchone()
            if srow is None:
                raise UnknownName("scenario", f"no scenario named {scenario!r}")
            group_id: int | None = None
            if group is not None:
                cur = await conn.execute(
                    "SELECT g.id, (SELECT count(*) FROM group_members m WHERE m.group_id = g.id)"
                    " FROM groups g WHERE g.name = %s", (group,))
                grow = await cur.fetchone()
                if grow is None:
                    raise UnknownName("group", f"no group named {group!r}")
                group_id, n = int(grow[0]), int(grow[1])
                if n == 0:
                    raise InvalidInput("group", f"group {group!r} has no contact")
            else:
                n = cast(int, population)
            if batch_size is None:
                batch_size = auto_batch_size(n)
            size = _chunk_size(first, batch_size)
            cur = await conn.execute(
                "INSERT INTO campaigns (scenario_id, priority, launched_by, group_id, recipients,"
                " batch_size, requested, launch_state, launch_node, launch_heartbeat)"
                " VALUES (%s, %s, %s, %s, 0, %s, %s, 'writing', %s, now()) RETURNING id",
                (srow[0], srow[1], launched_by, group_id, batch_size, n, node))
            crow = await cur.fetchone()
            assert crow is not None
            cursor = LaunchCursor(int(crow[0]), node, n, 0, batch_size, group_id)
            cursor = await _write_chunk(conn, cursor, size)
            if cursor.written == 0:  # the group emptied since it was counted: roll back
                raise InvalidInput("group", f"group {group!r} has no contact")
        return await self._written_if_done(cursor)

    async def continue_launch(self, cursor: LaunchCursor, chunk: int) -> LaunchCursor:
        """The next chunk in one transaction; LaunchStopped if the launch is no longer ours."""
        if cursor.done:
            return cursor
        size = _chunk_size(chunk, cursor.batch_size)
        async with self._tx() as conn:
            cursor = await _write_chunk(conn, cursor, size)
        return await self._written_if_done(cursor)

    async def _written_if_done(self, cursor: LaunchCursor) -> LaunchCursor:
        if not cursor.done:
            return cursor
        async with self._statement() as conn:
            cur = await conn.execute("SELECT tenir_launch_written(%s, %s)",
                                     (cursor.campaign_id, cursor.node))
            row = await cur.fetchone()
        if row is None or row[0] != "written":
            raise LaunchStopped(cursor.campaign_id, f"launch is {row[0] if row else '?'}")
        return cursor

    async def fail_launch(self, campaign_id: int, node: str, error: str) -> bool:
        """Mark a launch ``node`` is writing as failed (what was written is still sent; the
        campaign then ends 'failed'). False if it was not writing (any more)."""
        check_name("node", node)
        async with self._statement() as conn:
            cur = await conn.execute("SELECT tenir_fail_launch(%s, %s, %s)",
                                     (campaign_id, node, error[:1000]))
            row = await cur.fetchone()
        return bool(row and row[0])

    async def fail_stalled_launches(
        self, live_nodes: Sequence[str], grace_s: float, stale_s: float,
    ) -> list[StalledLaunch]:
        """Fail the launches whose writer is not in ``live_nodes`` and silent for ``grace_s``,
        or silent for ``stale_s`` whoever it is. Returns what was failed."""
        if not 0 <= grace_s <= stale_s:
            raise InvalidInput("grace_s", "must be >= 0 and <= stale_s")
        async with self._statement() as conn:
            cur = await conn.execute("SELECT * FROM tenir_fail_stalled_launches(%s, %s, %s)",
                                     (list(live_nodes), grace_s, stale_s))
            rows = await cur.fetchall()
        return [StalledLaunch(int(r[0]), str(r[1]), int(r[2]), int(r[3] or r[2])) for r in rows]


async def _write_chunk(conn: Conn, cursor: LaunchCursor, size: int) -> LaunchCursor:
    c = cursor
    params: dict[str, Any] = {"c": c.campaign_id, "bs": c.batch_size, "node": c.node}
    if c.group_id is None:
        last = min(c.requested, c.written + size)
        await conn.execute(_POPULATION_CHUNK, {**params, "n": c.requested,
                                               "g0": c.written + 1, "g1": last})
        wrote, after, done = last - c.written, 0, last >= c.requested
    else:
        cur = await conn.execute(_GROUP_CHUNK, {**params, "w": c.written, "g": c.group_id,
                                                "after": c.after_contact, "lim": size})
        row = await cur.fetchone()
        assert row is not None
        wrote, after = int(row[0]), int(row[1])
        done = wrote < size
    cur = await conn.execute(_ADVANCE, {**params, "k": wrote})
    advanced = await cur.fetchone()
    if advanced is None:
        raise LaunchStopped(c.campaign_id, "the launch was failed or the campaign cancelled "
                                           "while it was being written")
    return replace(c, written=c.written + wrote, after_contact=after, done=done)
