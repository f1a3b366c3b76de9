"""Whether this node reaches the campaign store, and what it does when it does not.

A node whose site loses the link to the other datacenter (the witness still reachable) keeps its
coordination membership but can no longer record anything: its site's HAProxy routes to a
primary on the other side. Left alone it would hold its batches until their lease expires
(45 s in the lab). So each node probes the store (``SELECT 1`` on a connection of its own,
every ``probe_s``) and publishes what it finds in its membership (``MemberInfo.store``):

* ``ok``: the store answered less than ``grace_s`` ago. While ok, the node publishes a
  heartbeat (``store_seq`` grows, at most every ``heartbeat_s``).
* ``unreachable``: no answer for ``grace_s``, and no other member shows it reaches the store.
  That is what a PostgreSQL failover looks like from every node: it keeps sending, its outcomes
  buffered and retried, as before.
* ``cut``: no answer for ``grace_s`` while another live member's heartbeat advanced after this
  node's last answer plus ``margin_s``: others reach the store, this node does not. It stops
  sending at once (it is a dispatch gate), resigns the watchdog if it leads, then publishes
  ``cut``; the watchdog leader (a node that reaches the store) moves its batches.

Why the margin: a heartbeat seen late may come from a probe that succeeded before the store
went away (the other node published it, this one read the members later). An advance is dated
by the member read before the one that showed it (:class:`Peers`), so a read that comes late,
after reads that failed, proves nothing about when the heartbeat was made. The margin covers
the probe period, this node's read period (``probe_s`` both) and a coordination call
(``retry_timeout``): a heartbeat seen after ``last answer + margin`` was made after the store
stopped answering this node, so during a PostgreSQL failover (nobody answers) no node judges
itself cut. At its end, the first node to reach the new primary publishes a heartbeat that the
others may read before their own next probe: so before judging itself cut a node probes once
more (up to the probe's timeout), and the answer keeps it ``ok``. Its batches, with the
outcomes it journaled through the outage, stay its own.

Back: the first answer makes it ``ok`` again (sending resumes, its heartbeat too). Its batches
were moved meanwhile: what it still tries to write is refused by their newer epoch (fencing).
Budget after a cut: about ``grace_s`` to ``margin_s + heartbeat_s + probe_s`` until ``cut``
(3-4.5 s with the lab's values), plus the confirming probe (1 s on a silent link, its timeout),
a watchdog cycle and a claim (docs/failover-timings.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg

from cluster.coordination.base import CoordinationError, Coordinator, MemberInfo
from nodes.member_publish import Publication

log = logging.getLogger("tenir.store_health")
OK, UNREACHABLE, CUT = "ok", "unreachable", "cut"
PROBE_OPTIONS: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1,
                                 "keepalives_count": 2, "tcp_user_timeout": 2000,
                                 "application_name": "tenir-store-probe"}


class StoreProbe(Protocol):
    async def probe(self) -> None:
        """Returns once the store answered; raises when it did not within its timeout."""

    async def close(self) -> None: ...


class PgProbe:
    """``SELECT 1`` on a connection of its own (not the pool's: a busy pool is not a cut). A
    query unanswered within ``timeout_s`` closes the connection (the next probe connects
    again) and counts as no answer."""

    def __init__(self, dsn: str, timeout_s: float = 1.0) -> None:
        self.dsn = dsn
        self.timeout_s = timeout_s
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def probe(self) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=max(1, round(self.timeout_s)),
                    **PROBE_OPTIONS), self.timeout_s * 2)
            query = asyncio.ensure_future(self._conn.execute("SELECT 1"))
            done, _ = await asyncio.wait({query}, timeout=self.timeout_s)
            if not done:  # closing the socket ends the query at once (no cancel round trip)
                await self.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(query, 2.0)
                raise TimeoutError(f"no answer within {self.timeout_s:g} s")
            query.result()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def judge(age_s: float, grace_s: float, others_reach: bool) -> str:
    """Pure: this node's store state from the seconds since the store last answered it and
    whether another member showed, since then, that it reaches the store."""
    if age_s < grace_s:
        return OK
    return CUT if others_reach else UNREACHABLE


@dataclass
class Peers:
    """When (this node's clock) each other member's store heartbeat last advanced, at the
    latest time it surely had: an advance seen in a read was made after the read before it,
    not when this read came. Dated by this read, a heartbeat published just before the store
    went away and read late (this node's member reads failing meanwhile, as when its etcd
    endpoint died with the primary's site) looked fresh and cut a node that was not."""

    me: str
    seen: dict[str, tuple[int, float]] = field(default_factory=dict)  # name -> (seq, at)
    last_read: float | None = None

    def update(self, members: Iterable[MemberInfo], now: float) -> None:
        live = set()
        made_after = self.last_read
        for m in members:
            if m.name == self.me:
                continue
            live.add(m.name)
            before = self.seen.get(m.name)
            if m.store == OK and (before is None or m.store_seq != before[0]):
                # first sight counts as old: only an advance seen here proves a fresh answer
                self.seen[m.name] = (m.store_seq, made_after if before is not None
                                     and made_after is not None else -1.0)
        for gone in set(self.seen) - live:
            del self.seen[gone]
        self.last_read = now

    def reaching_since(self, t: float) -> list[str]:
        return sorted(n for n, (_seq, at) in self.seen.items() if at > t)


class StoreHealth:
    """The dispatcher's gate while cut (``may_dispatch``), the watchdog's ``cut()``, and the
    loop that probes and publishes (``run``)."""

    def __init__(self, probe: StoreProbe, coordinator: Coordinator, publication: Publication,
                 *, node: str, site: str, grace_s: float = 3.0, probe_s: float = 0.5,
                 heartbeat_s: float = 1.0, margin_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_cut: Callable[[], Awaitable[Any]] | None = None) -> None:
        """``on_cut``: called once each time the node becomes cut, after the gate closed and
        before it says so (the watchdog's ``step_down``: a leader whose cycle is stuck on the
        store must not keep the lead until that call gives up)."""
        if not 0 < probe_s < grace_s:
            raise ValueError(f"probe_s {probe_s!r} must be > 0 and < grace_s {grace_s!r}")
        self.prober = probe
        self.coordinator = coordinator
        self.publication = publication
        self.extra = {"node": node, "site": site}
        self.grace_s = grace_s
        self.probe_s = probe_s
        self.heartbeat_s = heartbeat_s
        self.margin_s = (margin_s if margin_s is not None
                         else 2 * probe_s + coordinator.settings.retry_timeout)
        self.clock = clock
        self.peers = Peers(node)
        self.state = OK
        self.last_ok = clock()  # the node opened the store before it started
        self.seq = 0
        self._published: tuple[str, int] | None = None
        self._published_at = -1e9
        self.reaching: list[str] = []
        self.on_cut = on_cut

    def may_dispatch(self) -> bool:
        return self.state != CUT

    def cut(self) -> bool:
        return self.state == CUT

    def age(self) -> float:
        return self.clock() - self.last_ok

    async def probe_once(self) -> bool:
        try:
            await self.prober.probe()
        except Exception as exc:
            log.debug("store probe failed: %s: %s", type(exc).__name__, exc, extra=self.extra)
            return False
        self.last_ok = self.clock()
        self.seq += 1
        return True

    async def decide_once(self) -> str:
        """Read the members, judge, publish what changed (and the heartbeat); the state."""
        # unreachable: the membership gate fences this node if that lasts; judge on what we saw
        with contextlib.suppress(CoordinationError):
            self.peers.update(await self.coordinator.members(), self.clock())
        self.reaching = self.peers.reaching_since(self.last_ok + self.margin_s)
        new = judge(self.age(), self.grace_s, bool(self.reaching))
        if new == CUT and self.state != CUT and await self.probe_once():
            # Others reach the store: ask it once more before judging. At the end of a
            # failover every node reconnects within a probe period or so; a peer's heartbeat
            # read first must not cut a node whose own next probe answers.
            new = judge(self.age(), self.grace_s, bool(self.reaching))
        if new != self.state:
            self._say(new)
            self.state = new  # the gate closes here, before anyone is told
            if new == CUT and self.on_cut is not None:
                try:
                    await self.on_cut()
                except Exception as exc:  # said; the watchdog's own cycle steps down too
                    log.warning("on cut: %s: %s", type(exc).__name__, exc, extra=self.extra)
        await self._publish()
        return self.state

    def _say(self, new: str) -> None:
        age = f"{self.age():.1f} s"
        if new == CUT:
            log.warning("cut from PostgreSQL: no answer for %s while %s reach it: no more "
                        "sending, the watchdog moves this node's batches", age,
                        ", ".join(self.reaching), extra=self.extra)
        elif new == UNREACHABLE:
            log.warning("PostgreSQL unreachable for %s and no other node shows it reaches it "
                        "(a failover?): still sending, outcomes kept until it answers", age,
                        extra=self.extra)
        else:
            log.info("PostgreSQL answers again: sending", extra=self.extra)

    async def _publish(self) -> None:
        want = (self.state, self.seq if self.state == OK else self._published_seq())
        now = self.clock()
        if self._published is not None and want[0] == self._published[0] and (
                self.state != OK or want[1] == self._published[1]
                or now - self._published_at < self.heartbeat_s):
            return
        try:
            await self.publication.publish(store=want[0], store_seq=want[1])
        except CoordinationError as exc:
            log.debug("store state not published: %s", exc, extra=self.extra)
            return
        self._published, self._published_at = want, now

    def _published_seq(self) -> int:
        return self._published[1] if self._published is not None else 0

    async def run(self, stop: asyncio.Event) -> None:
        async def every(period: float, action: Callable[[], Any]) -> None:
            while not stop.is_set():
                await action()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), period)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(every(self.probe_s, self.probe_once))
            tg.create_task(every(self.probe_s, self.decide_once))


class AllGates:
    """A dispatch gate open only while every one of ``gates`` is."""

    def __init__(self, *gates: Any) -> None:
        self.gates = gates

    def may_dispatch(self) -> bool:
        return all(g.may_dispatch() for g in self.gates)
