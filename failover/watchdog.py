"""The watchdog: every alert node runs it, one leads (election ``watchdog``).

Each cycle the leader reads one frozen :class:`~failover.snapshot.Snapshot` (live members, site
health, carrier health, PostgreSQL as Patroni's REST API sees it, who holds which batches),
decides with a pure function (:func:`decide`), acts, and returns a sentence saying what it did
and what it saw. The sentence is logged when it changes (the count of batches in flight aside);
a cycle that moved work also stores it as an event (kind ``watchdog.move``) with its timestamp
and the snapshot's facts.

What it moves: the batches of a node that is no longer a member (its lease or session expired:
the process died, its host died, or its site was cut from the coordination quorum), and those of
a member that says it is cut from the store (``MemberInfo.store == "cut"``: its site lost the
link to the other datacenter but still reaches the witness; ``nodes/store_health.py``). Either
has stopped sending before it can be taken for dead (self-fencing: membership expiry, or the
store gate it closes before it says ``cut``), and should it still write, the database refuses
its stale epoch. Moving a batch puts it back in the queue; the next claim takes it with a higher
epoch. A leader that is itself cut from the store gives up the lead (``store_state``), so that a
node that can write leads.

Same-site takeover: the dead node may have submitted messages whose outcomes it had not
recorded; they are resent with the same references, which only its own site's carriers
deduplicate. So while that site (the one the node claimed its batches for, as the store
recorded it) still has a live member, the batches go back reserved for it for ``hold_s``
seconds: during the hold only its nodes may claim them, after it anyone (a busy or dying site
does not keep work stuck). With no live member left there (site lost or cut off), or a site
unknown (claimed by a node of the previous version), anyone takes them at once.

When Patroni answers that no member holds the leader key (a PostgreSQL failover is in progress),
the move would fail anyway: the watchdog waits, says so, and moves at the first cycle after a
primary is back. When no Patroni answers (or none is configured), it acts as if it had not
asked: the store's write decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cluster.coordination.base import CoordinationError, Coordinator
from failover.pg_state import NOT_CONFIGURED, PgState, PostgresView
from failover.snapshot import (
    Snapshot,
    carrier_health,
    describe,
    describe_channels,
    describe_members,
    describe_sites,
    site_health,
)
from replication.store_api import MAX_HOLD_S, CampaignStore

__all__ = ["ELECTION", "HOLD_S", "Decision", "Snapshot", "Watchdog", "decide"]

log = logging.getLogger("tenir.watchdog")
ELECTION = "watchdog"
# How long a dead node's batches stay reserved for its site. A live node of that site with a free
# slot claims within its idle poll (0.25 s); a saturated one frees a slot when one of its batches
# ends (a second or two for an SMS batch of 100 in the lab): 3 s covers both with room for a slow
# claim, and is what the other site waits at most before helping a saturated site.
HOLD_S = 3.0
# A launch whose writer is no longer a member and wrote nothing for LAUNCH_GRACE_S is failed
# (the writer died: docs/campaigns.md); one silent for LAUNCH_STALE_S is failed whoever wrote
# it (stuck). A writer that is a member survives a PostgreSQL failover (~20 s) untouched.
LAUNCH_GRACE_S = 3.0
LAUNCH_STALE_S = 60.0


class StoreState(Protocol):
    """Whether this node is cut from the store (``nodes.store_health.StoreHealth``)."""

    def cut(self) -> bool: ...


@dataclass(frozen=True)
class Decision:
    reassign: tuple[str, ...] = ()  # nodes whose batches go back to the queue
    wait: tuple[str, ...] = ()  # nodes whose batches go back once PostgreSQL has a primary
    notes: tuple[str, ...] = field(default=())  # why it waits
    reserve: Mapping[str, str] = field(default_factory=dict)  # node -> site holding its batches
    hold_s: float = 0.0  # how long (0 when nothing is reserved)
    lift: tuple[str, ...] = ()  # sites whose holds end now: no live member can take them there
    cut: tuple[str, ...] = ()  # of reassign/wait: members cut from the store (the others: dead)

    def why(self) -> str:
        """Why the nodes whose work moves (or waits) lose it: ``no longer members``, ``cut
        from PostgreSQL while other nodes reach it``, or both, naming the nodes then."""
        nodes = self.reassign or self.wait
        dead = [n for n in nodes if n not in self.cut]
        if not self.cut:
            return "no longer members"
        cut = "cut from PostgreSQL while other nodes reach it"
        if not dead:
            return cut
        return f"{', '.join(dead)} no longer members; {', '.join(self.cut)} {cut}"


def decide(snap: Snapshot, hold_s: float = HOLD_S, holding: Collection[str] = ()) -> Decision:
    """Pure: which nodes hold work but are no longer members or are cut from the store, whether
    to move it now, and for which site to hold it: for ``hold_s`` seconds, the site a node
    claimed its batches for, if that site still has a live member that reaches the store
    (nobody else could deduplicate what it already sent). Of the sites ``holding`` batches,
    those left without such a member (a whole site dying, its nodes' memberships expiring one
    after the other, or cut from the store) have their holds lifted at once."""
    able = dict(snap.sites)  # live members per site that reach the store
    for member, member_site in snap.members.items():
        if member in snap.store_cut:
            able[member_site] = able.get(member_site, 1) - 1
    lift = tuple(sorted(s for s in holding if able.get(s, 0) == 0))
    held = {n for n, count in snap.in_flight.items() if count > 0}
    cut = tuple(sorted(n for n in held if n in snap.members and n in snap.store_cut))
    dead = tuple(sorted(n for n in held if n not in snap.members or n in snap.store_cut))
    if dead and snap.postgres.no_primary:
        return Decision(wait=dead, notes=(snap.postgres.describe(),), lift=lift, cut=cut)
    owner_sites = {**snap.owner_sites, **{n: snap.members[n] for n in cut}}
    reserve = {n: site for n in dead
               if (site := owner_sites.get(n)) is not None and able.get(site, 0) > 0
               } if hold_s > 0 else {}
    return Decision(reassign=dead, reserve=reserve, hold_s=hold_s if reserve else 0.0,
                    lift=lift, cut=cut)


class Watchdog:
    def __init__(self, coordinator: Coordinator, store: CampaignStore, *, node: str, site: str,
                 cycle_s: float = 1.0, postgres: PostgresView | None = None,
                 hold_s: float = HOLD_S, store_state: StoreState | None = None) -> None:
        """``hold_s``: how long a dead node's batches stay reserved for its site (0: never
        reserved; at most the store's ``MAX_HOLD_S``). ``store_state``: this node's own view of
        the store; while it is cut, it does not lead."""
        if not 0 <= hold_s <= MAX_HOLD_S:  # also refuses NaN
            raise ValueError(f"hold_s must be in [0, {MAX_HOLD_S:g}] seconds, not {hold_s!r}")
        self.coordinator = coordinator
        self.store = store
        self.node = node
        self.site = site
        self.cycle_s = cycle_s
        self.postgres = postgres
        self.hold_s = float(hold_s)
        self.store_state = store_state
        self.last_sentence = ""
        self.last_snapshot: Snapshot | None = None  # of the last cycle this node led
        self._sites_seen: set[str] = {site}  # a site whose members all died still counts (0)
        self._holds: dict[str, float] = {}  # site -> monotonic end of the latest hold for it
        self._sync_copy: bool | None = None  # whether PostgreSQL had a synchronous standby

    async def read_postgres(self) -> PgState:
        if self.postgres is None:
            return NOT_CONFIGURED
        try:
            return await self.postgres.read()
        except Exception as exc:  # the contract says it does not raise; a bug must not stop us
            log.warning("PostgreSQL state not read: %s", exc,
                        extra={"node": self.node, "site": self.site})
            return PgState(unknown_because="Patroni view failed", errors=(repr(exc),))

    async def snapshot(self, postgres: PgState | None = None) -> Snapshot:
        """Read the facts once: PostgreSQL (unless given), members, leader, batches in flight."""
        if postgres is None:
            postgres = await self.read_postgres()
        infos = await self.coordinator.members()
        leader = await self.coordinator.leader(ELECTION)
        in_flight = await self.store.batches_in_flight()
        members = {m.name: m.site for m in infos}
        store_cut = frozenset(m.name for m in infos if m.store == "cut")
        # The store knows a dead node's site even if this leader never saw its membership.
        orphaned = any(n not in members for n, count in in_flight.items() if count > 0)
        owner_sites = await self.store.owner_sites() if orphaned else {}
        self._sites_seen.update(m.site for m in infos)
        self._sites_seen.update(owner_sites.values())
        return Snapshot(
            taken_at=time.monotonic(), leader=leader, members=members, in_flight=in_flight,
            sites=site_health(infos, self._sites_seen), channels=carrier_health(infos),
            postgres=postgres, owner_sites=owner_sites, store_cut=store_cut,
        )

    async def cycle(self) -> str:
        """One cycle; returns the sentence saying what it did."""
        if self.store_state is not None and self.store_state.cut():
            return await self.step_down()
        try:
            leads = await self.coordinator.campaign(ELECTION)
        except CoordinationError as exc:
            return f"{self.node}: cannot reach the coordination service ({exc}); not acting"
        if not leads:
            try:
                leader = await self.coordinator.leader(ELECTION)
            except CoordinationError:
                leader = None
            return f"{self.node}: following watchdog leader {leader or 'unknown'}"
        postgres = await self.read_postgres()
        try:
            snap = await self.snapshot(postgres)
        except Exception as exc:
            if not postgres.no_primary:
                raise
            # The store is failing over with PostgreSQL: nothing could be moved anyway.
            return (f"{self.node} leads: {postgres.describe()}: waiting; the snapshot could not"
                    f" be read ({type(exc).__name__}: {exc})")
        self.last_snapshot = snap
        await self._note_sync(snap.postgres)
        await self._fail_stalled_launches(snap)
        now = time.monotonic()
        self._holds = {s: until for s, until in self._holds.items() if until > now}
        decision = decide(snap, self.hold_s, self._holds)
        lifted = await self._lift(decision.lift)
        if decision.wait:
            waiting = ", ".join(f"{snap.in_flight[n]} batches of {n}" for n in decision.wait)
            return (f"{self.node} leads: {'; '.join(decision.notes)}: waiting before moving "
                    f"{waiting} ({decision.why()}); {describe_members(snap)}, "
                    f"{describe_channels(snap.channels)}")
        if not decision.reassign:
            if lifted:
                sentence = f"{self.node} leads: {describe_lifted(lifted)}; {describe(snap)}"
                await asyncio.shield(self.store.record_event(
                    "watchdog.lift", sentence, self.node, self.site,
                    details={"lifted": lifted, **facts(snap)}))
                return sentence
            return (f"{self.node} leads: {describe(snap)}; {snap.held} batches in flight, "
                    "nothing to move")
        by_campaign = await self.store.batches_in_flight_by_campaign()
        campaigns = {str(c): {n: k for n, k in nodes.items() if n in decision.reassign}
                     for c, nodes in by_campaign.items()
                     if any(n in decision.reassign for n in nodes)}
        moved: dict[str, int] = {}
        for dead in decision.reassign:
            site = decision.reserve.get(dead)
            moved[dead] = await self.store.reassign_batches(
                dead, reserve_for=site, hold_s=decision.hold_s if site else 0.0)
        reserved = {dead: {"site": site, "hold_s": decision.hold_s}
                    for dead, site in decision.reserve.items() if moved.get(dead)}
        for held in reserved.values():
            self._holds[str(held["site"])] = now + decision.hold_s
        parts = [f"{n} batches of {dead}" for dead, n in moved.items()]
        sentence = (f"{self.node} leads: moved {', '.join(parts)} ({decision.why()}) back to "
                    f"the queue{describe_takers(reserved, moved, snap)}; "
                    + (f"{describe_lifted(lifted)}; " if lifted else "")
                    + f"{snap.postgres.describe()}, {describe_channels(snap.channels)}")
        await asyncio.shield(self.store.record_event(
            "watchdog.move", sentence, self.node, self.site,
            details={"moved": moved, "reserved": reserved, "lifted": lifted,
                     "cut": list(decision.cut), "campaigns": campaigns, **facts(snap)}))
        return sentence

    async def step_down(self) -> str:
        """Cut from the store: a leader that cannot write cannot move anything; let one that
        can lead (nobody else takes the lead while this node holds it). Called by each cycle
        while cut, and at once by the store's health when the node becomes cut (a cycle may be
        stuck on a store call then)."""
        try:
            if await self.coordinator.leader(ELECTION) == self.node:
                await self.coordinator.resign(ELECTION)
                return (f"{self.node}: cut from PostgreSQL: gave up leading the watchdog to a "
                        "node that reaches it")
        except CoordinationError as exc:
            return f"{self.node}: cut from PostgreSQL, coordination unreachable too ({exc})"
        return f"{self.node}: cut from PostgreSQL: not leading the watchdog"

    async def _note_sync(self, pg: PgState) -> None:
        """Record when PostgreSQL loses or regains its synchronous standby (the time without a
        synchronous copy is the RPO exposure the evidence report adds up). A leader that
        starts while the copy is missing records the loss it sees."""
        if not pg.known or pg.primary is None:
            return
        has = pg.sync_standby is not None
        if has == self._sync_copy or (self._sync_copy is None and has):
            self._sync_copy = has
            return
        kind = "postgres.sync_restored" if has else "postgres.sync_lost"
        sentence = (f"{self.node} leads: PostgreSQL primary {pg.primary} "
                    + (f"has a synchronous standby again ({pg.sync_standby})" if has
                       else "has no synchronous standby: an acknowledged write lives on one "
                            "site only (RPO exposure)"))
        try:
            await asyncio.shield(self.store.record_event(kind, sentence, self.node, self.site,
                                                         details={"postgres": pg.as_details()}))
        except Exception as exc:  # said again next cycle; never in the way of moving work
            log.warning("%s not recorded: %s: %s", kind, type(exc).__name__, exc,
                        extra={"node": self.node, "site": self.site})
            return
        self._sync_copy = has

    async def _fail_stalled_launches(self, snap: Snapshot) -> None:
        """Fail the launches whose writer died mid-launch; each becomes a recorded event."""
        for st in await self.store.fail_stalled_launches(list(snap.members), LAUNCH_GRACE_S,
                                                         LAUNCH_STALE_S):
            sentence = (f"{self.node} leads: launch of campaign {st.campaign_id} failed: its "
                        f"writer {st.node} stopped after {st.written} of {st.requested} "
                        "recipients; what was written is still sent, the campaign ends failed")
            log.error("%s", sentence, extra={"node": self.node, "site": self.site,
                                             "campaign": st.campaign_id})
            await asyncio.shield(self.store.record_event(
                "watchdog.launch_failed", sentence, self.node, self.site, st.campaign_id,
                details={"writer": st.node, "written": st.written,
                         "requested": st.requested}))

    async def _lift(self, sites: tuple[str, ...]) -> dict[str, int]:
        """End the holds of ``sites`` (no live member left there); site -> batches opened."""
        lifted: dict[str, int] = {}
        for site in sites:
            lifted[site] = await self.store.lift_reservations(site)
            self._holds.pop(site, None)
        return lifted

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle until ``stop`` is set; log each sentence that says something new (``steady``)."""
        while not stop.is_set():
            before = self.last_snapshot
            try:
                sentence = await self.cycle()
            except Exception as exc:  # the store may be failing over: say so, try again
                sentence = f"{self.node}: watchdog cycle failed: {type(exc).__name__}: {exc}"
            if steady(sentence) != steady(self.last_sentence):
                extra: dict[str, Any] = {"node": self.node, "site": self.site}
                if self.last_snapshot is not None and self.last_snapshot is not before:
                    extra["watchdog"] = facts(self.last_snapshot)  # this cycle's facts
                log.info("%s", sentence, extra=extra)
                self.last_sentence = sentence
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cycle_s)


_IN_FLIGHT = re.compile(r"\d+ batches in flight")


def steady(sentence: str) -> str:
    """The sentence without what changes every cycle of a running campaign (the batches in
    flight): ``run`` logs a sentence when this changes, not twice a second for the count."""
    return _IN_FLIGHT.sub("N batches in flight", sentence)


def describe_lifted(lifted: Mapping[str, int]) -> str:
    """``opened the 3 batches held for paris to every site (no live member left there)``."""
    return "; ".join(f"opened the {n} batches held for {site} to every site (no live member left"
                     " there)" for site, n in lifted.items())


def live_members(count: int) -> str:
    return f"{count} live member{'' if count == 1 else 's'}"


def describe_takers(reserved: Mapping[str, Mapping[str, Any]], moved: Mapping[str, int],
                    snap: Snapshot) -> str:
    """Who may take the moved batches, said after "back to the queue":
    `` for the 2 live members (marseille 1, paris 1)``, or with a hold
    ``, reserved 3 s for paris (1 live member), then open to the 2 live members (...)``
    (``those of paris-node1 reserved ...`` for each held node when several nodes moved).
    Members cut from the store take nothing: they are not counted."""
    sites = dict(snap.sites)
    for member in snap.store_cut & set(snap.members):
        sites[snap.members[member]] = sites.get(snap.members[member], 1) - 1
    able = len(set(snap.members) - snap.store_cut)
    everyone = f"{live_members(able)} ({describe_sites(sites)})"
    if snap.store_cut & set(snap.members):
        everyone = everyone.replace("live member", "live member that reaches PostgreSQL", 1) \
            if able == 1 else everyone.replace("live members", "live members that reach "
                                               "PostgreSQL", 1)
    if not reserved:
        return f" for the {everyone}"
    clauses = [(f"those of {dead} " if len(moved) > 1 else "")
               + f"reserved {held['hold_s']:g} s for {held['site']} "
               f"({live_members(sites.get(held['site'], 0))})"
               for dead, held in reserved.items()]
    return f", {', '.join(clauses)}, then open to the {everyone}"


def facts(snap: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON, for events and structured logs."""
    return {"members": sorted(snap.members), "sites": dict(snap.sites),
            "channels": {c: list(sites) for c, sites in snap.channels.items()},
            "postgres": snap.postgres.as_details()}
