"""The store observer: reads what PostgreSQL committed into the history.

Every ``read()`` is one REPEATABLE READ transaction (one snapshot) that appends:

* ``outcome`` ok ops for attempts new or changed since the last read (every outcome it sees is
  committed; ``at`` is the snapshot's database time, an upper bound of the commit);
* ``claim`` ok ops from the claim log (migration 0006), with the row's own time as ``at``;
* ``stale_write`` ok ops from ``fencing_rejections``;
* ``move`` ok ops for ``watchdog.move`` events, ``event`` ok ops for the others;
* ``complete`` ok ops for campaigns seen completed or cancelled (``at``: completed_at);
* one ``read`` ok op ``{db_time}`` last, ``at`` = the snapshot's database time.

Incremental without missing a late commit: rows are selected by ``xmin`` (the id of the
transaction that wrote them) at or above the previous snapshot's ``xmin`` horizon: every
transaction below it had ended when that snapshot was taken, so its rows were already seen;
a transaction still running then has an xid at or above it and is read again now. Rows seen
twice are recognised (by id, or by an unchanged attempt) and not added again. ``xmin`` is
compared on 32 bits: fine for a run, not across a transaction-id wraparound. Without a
launched campaign to keep to (below), a read scans ``attempts`` sequentially (no index on
xmin): 161 ms with 1.4 million attempts in the table, 3.5 ms keeping to one campaign
(``bench/observer_read.py``).

``final(campaign)`` appends the ``final`` op the checkers judge the end state on: every
attempt (carrier message id, epoch, recorded time, state), each recipient's final reference,
the pending count and the members of each batch.

Use: ``async with PgObserver(dsn, history) as obs: ... await obs.read() ...``; the runner
calls ``read()`` on a period (``chaos.collect.Collecting``) and right before each fault.

Through faults. ``dsn`` may be several (each site's HAProxy): a read that fails (the site it
went through was lost, PostgreSQL is failing over) drops its connection and raises, and the next
read connects again, trying each DSN in turn from the next one. A failed read loses nothing:
the horizon only moves with a read that succeeded. Connections give up on a silent peer within
seconds (TCP keepalives and user timeout), not after the kernel's minutes.
``skip_existing()`` starts the history at the store's present: what earlier runs committed is
not read (call it before the run's first launch).

Only the run's campaigns. Once the history holds a launched campaign (a ``launch`` ok op), the
outcome read keeps to the campaigns launched in it, through the primary key's range of their
references (``C:`` to ``C;``), instead of scanning every attempt of every earlier run: the read
before a fault then takes milliseconds however large the database grew, which keeps the window
the rpo checker measures small. That range follows the references' byte order, so it is used
only when the database collates in it (``C``, ``POSIX``, ``C.UTF-8``: the lab's); otherwise the
read scans as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import psycopg

from chaos.history import History

OUTCOMES = """
SELECT a.reference, a.campaign_id, a.recipient_id, a.channel, a.state, a.carrier_message_id,
       a.epoch, a.node, a.site, a.batch_id, extract(epoch FROM a.sent_at)::float8,
       coalesce(r.final_reference = a.reference, false)
  FROM attempts a JOIN recipients r ON r.id = a.recipient_id
 WHERE a.xmin::text::bigint >= %(horizon)s
"""
CLAIMS = """
SELECT id, extract(epoch FROM at)::float8, kind, batch_id, epoch, node, site,
       extract(epoch FROM lease_until)::float8, prev_owner, prev_epoch, current_epoch, rows
  FROM claim_log WHERE xmin::text::bigint >= %(horizon)s ORDER BY id
"""
REFUSALS = """
SELECT id, extract(epoch FROM at)::float8, operation, batch_id, epoch, node, current_epoch,
       current_owner, current_state, rows_refused
  FROM fencing_rejections WHERE xmin::text::bigint >= %(horizon)s ORDER BY id
"""
EVENTS = """
SELECT seq, extract(epoch FROM at)::float8, kind, doc->>'node', doc->>'site',
       (doc->>'campaign_id')::bigint, doc->>'sentence', coalesce(doc->'details', '{}'::jsonb)
  FROM ledger WHERE xmin::text::bigint >= %(horizon)s ORDER BY seq
"""
COMPLETED = """
SELECT id, state, extract(epoch FROM completed_at)::float8 FROM campaigns
 WHERE completed_at IS NOT NULL AND xmin::text::bigint >= %(horizon)s
"""
SNAPSHOT = """
SELECT extract(epoch FROM clock_timestamp())::float8,
       (pg_snapshot_xmin(pg_current_snapshot())::text::numeric % 4294967296)::bigint
"""
# Give up on a peer that went silent (a cut link, a site without power) within seconds.
CONNECT_OPTIONS: dict[str, Any] = {"connect_timeout": 3, "keepalives": 1, "keepalives_idle": 2,
                                   "keepalives_interval": 1, "keepalives_count": 2,
                                   "tcp_user_timeout": 4000}
READ_TIMEOUT_S = 15.0


class PgObserver:
    """See the module docstring. Reads are serialised (one connection); a broken connection is
    opened again at the next read, which covers what was committed meanwhile."""

    def __init__(self, dsn: str | Sequence[str], history: History, *,
                 process: str = "observer") -> None:
        self.dsns = [dsn] if isinstance(dsn, str) else list(dsn)
        if not self.dsns:
            raise ValueError("dsn: at least one")
        self._next = 0
        self.history = history
        self.process = process
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._horizon = 0
        self._attempts: dict[str, tuple[Any, ...]] = {}
        self._seen_ids: dict[str, set[int]] = {"claim": set(), "stale": set(), "event": set()}
        self._completed: set[int] = set()
        self.last_read_at: float | None = None
        self.followed: list[int] = []  # the campaigns launched in the history
        self._scanned = 0  # history ops already looked at for launches
        self._byte_order: bool | None = None  # whether the database collates in byte order
        # One connection, one read at a time: the nemesis reads just before a fault while the
        # periodic collector may be reading (two transactions on one connection would nest).
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> PgObserver:
        await self._connection()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._drop()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        errors = []
        for i in range(len(self.dsns)):
            k = (self._next + i) % len(self.dsns)
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    self.dsns[k], autocommit=True, **CONNECT_OPTIONS)
                self._next = k
                if self._byte_order is None:
                    row = await (await self._conn.execute("SHOW lc_collate")).fetchone()
                    collate = str(row[0]) if row else ""
                    self._byte_order = collate in ("C", "POSIX") or \
                        collate.lower().replace("-", "") in ("c.utf8",)
                return self._conn
            except psycopg.Error as exc:
                errors.append(f"{type(exc).__name__}: {str(exc).strip()[:200]}")
        raise psycopg.OperationalError(f"no store answers: {'; '.join(errors)}")

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
                await asyncio.wait_for(conn.close(), 2.0)

    async def _guarded(self, coro: Any) -> Any:
        """Run one read, alone on the connection; on failure drop the connection (the next read
        reconnects, starting with the next DSN) and raise."""
        async with self._lock:
            try:
                return await asyncio.wait_for(coro, READ_TIMEOUT_S)
            except (psycopg.Error, OSError, TimeoutError):
                await self._drop()
                self._next = (self._next + 1) % len(self.dsns)
                raise

    async def skip_existing(self) -> float:
        """Start at the present: what is committed now is not read. Returns the database time."""
        async def snap() -> tuple[float, int]:
            conn = await self._connection()
            row = await (await conn.execute(SNAPSHOT)).fetchone()
            assert row is not None
            return float(row[0]), int(row[1])

        db_time, horizon = await self._guarded(snap())
        self._horizon = int(horizon)
        return float(db_time)

    async def read(self) -> float:
        """One snapshot's new rows into the history; returns its database time."""
        result: float = await self._guarded(self._read())
        return result

    async def _read(self) -> float:
        conn = await self._connection()
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur = await conn.execute(SNAPSHOT)
            row = await cur.fetchone()
            assert row is not None
            db_time, horizon = float(row[0]), int(row[1])
            params: dict[str, Any] = {"horizon": self._horizon}
            query = self._outcomes(params)
            outcomes = await (await conn.execute(query, params)).fetchall()
            claims = await (await conn.execute(CLAIMS, params)).fetchall()
            refusals = await (await conn.execute(REFUSALS, params)).fetchall()
            events = await (await conn.execute(EVENTS, params)).fetchall()
            completed = await (await conn.execute(COMPLETED, params)).fetchall()
        self._add_outcomes(outcomes, db_time)
        self._add_claims(claims)
        self._add_refusals(refusals)
        self._add_events(events)
        for cid, state, at in completed:
            if cid not in self._completed:
                self._completed.add(cid)
                self.history.add(self.process, "ok", "complete",
                                 {"campaign": cid, "state": state, "completed_at": at}, at=at)
        self.history.add(self.process, "ok", "read", {"db_time": db_time}, at=db_time)
        self._horizon = horizon
        self.last_read_at = db_time
        return db_time

    def _outcomes(self, params: dict[str, Any]) -> Any:
        """The outcome query, kept to the followed campaigns' reference ranges when it can."""
        for op in self.history.ops[self._scanned:]:
            if op.f == "launch" and op.type == "ok":
                self.followed.append(int(op.value["campaign"]))
        self._scanned = len(self.history.ops)
        if not self.followed or not self._byte_order:
            return OUTCOMES
        ranges = []
        for i, campaign in enumerate(self.followed):
            params[f"lo{i}"], params[f"hi{i}"] = f"{campaign}:", f"{campaign};"
            ranges.append(f"(a.reference >= %(lo{i})s AND a.reference < %(hi{i})s)")
        return OUTCOMES + f"   AND ({' OR '.join(ranges)})\n"

    def _add_outcomes(self, rows: list[tuple[Any, ...]], db_time: float) -> None:
        for (ref, cid, rid, channel, state, cmid, epoch, node, site, batch, recorded,
             final) in rows:
            key = (state, cmid, epoch, recorded, final)
            if self._attempts.get(ref) == key:
                continue
            self._attempts[ref] = key
            self.history.add(self.process, "ok", "outcome", {
                "campaign": cid, "recipient": rid, "reference": ref, "channel": channel,
                "state": state, "carrier_message_id": cmid, "epoch": epoch, "node": node,
                "site": site, "batch": batch, "recorded_at": recorded, "final": final},
                at=db_time)

    def _fresh(self, kind: str, row_id: int) -> bool:
        seen = self._seen_ids[kind]
        if row_id in seen:
            return False
        seen.add(row_id)
        return True

    def _add_claims(self, rows: list[tuple[Any, ...]]) -> None:
        for (rid, at, kind, batch, epoch, node, site, lease, prev_owner, prev_epoch, current,
             nrows) in rows:
            if self._fresh("claim", rid):
                self.history.add(f"node:{node}", "ok", "claim", {
                    "id": rid, "batch": batch, "epoch": epoch, "node": node, "site": site,
                    "kind": kind, "lease_until": lease, "prev_owner": prev_owner,
                    "prev_epoch": prev_epoch, "current_epoch": current, "rows": nrows}, at=at)

    def _add_refusals(self, rows: list[tuple[Any, ...]]) -> None:
        for rid, at, operation, batch, epoch, node, current, owner, state, nrows in rows:
            if self._fresh("stale", rid):
                self.history.add(f"node:{node}", "ok", "stale_write", {
                    "id": rid, "batch": batch, "epoch": epoch, "node": node,
                    "operation": operation, "current_epoch": current, "current_owner": owner,
                    "current_state": state, "rows": nrows}, at=at)

    def _add_events(self, rows: list[tuple[Any, ...]]) -> None:
        for rid, at, kind, node, site, campaign, sentence, details in rows:
            if not self._fresh("event", rid):
                continue
            if kind == "watchdog.move":
                moved = details.get("moved", {}) if isinstance(details, dict) else {}
                self.history.add(f"node:{node}", "ok", "move", {
                    "id": rid, "nodes": sorted(moved) if isinstance(moved, dict) else moved,
                    "sentence": sentence, "details": details, "site": site}, at=at)
            else:
                self.history.add(f"node:{node}", "ok", "event", {
                    "id": rid, "kind": kind, "node": node, "site": site,
                    "campaign": campaign, "sentence": sentence, "details": details}, at=at)

    async def final(self, campaign: int) -> float:
        """The end state of ``campaign`` as one ``final`` op; returns its database time."""
        result: float = await self._guarded(self._final(campaign))
        return result

    async def _final(self, campaign: int) -> float:
        conn = await self._connection()
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = await (await conn.execute(
                "SELECT extract(epoch FROM clock_timestamp())::float8, recipients"
                " FROM campaigns WHERE id = %s", (campaign,))).fetchone()
            if row is None:
                raise LookupError(f"campaign {campaign}: not found")
            recipients = await (await conn.execute(
                "SELECT id, batch_id, state, final_reference FROM recipients"
                " WHERE campaign_id = %s", (campaign,))).fetchall()
            attempts = await (await conn.execute(
                "SELECT reference, carrier_message_id, epoch,"
                " extract(epoch FROM sent_at)::float8, state, node"
                " FROM attempts WHERE campaign_id = %s", (campaign,))).fetchall()
        db_time = float(row[0])
        members: dict[str, list[int]] = {}
        for rid, batch, _state, _ref in recipients:
            members.setdefault(str(batch), []).append(rid)
        self.history.add(self.process, "ok", "final", {
            "campaign": campaign, "recipients": int(row[1]),
            "pending": sum(1 for r in recipients if r[2] == "pending"),
            "finals": {str(rid): ref for rid, _b, state, ref in recipients if state != "pending"},
            "attempts": {ref: {"carrier_message_id": cmid, "epoch": epoch, "recorded_at": at,
                               "state": state, "node": node}
                         for ref, cmid, epoch, at, state, node in attempts},
            "batch_members": members}, at=db_time)
        return db_time
