"""What one watchdog cycle knows, read once and frozen: live members, site health, carrier
health, PostgreSQL as Patroni sees it, who holds how many batches, and (when some of them are no
longer members) the site each holder claimed its batches for.

Site health is the number of live members per site; a site seen before with no live member left
counts 0. Carrier health is, per channel, the sites where at least one live member reports the
channel working: each member republishes its ``carriers`` when a circuit breaker opens or closes
(``nodes/channels.py``). Both are built from ``Coordinator.members()`` by pure functions here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cluster.coordination.base import MemberInfo
from failover.pg_state import NOT_CONFIGURED, PgState
from replication.store_api import CHANNELS


@dataclass(frozen=True)
class Snapshot:
    """Everything one cycle decides on, read once."""

    taken_at: float
    leader: str | None
    members: Mapping[str, str]  # live member name -> site
    in_flight: Mapping[str, int]  # node -> batches it holds
    sites: Mapping[str, int] = field(default_factory=dict)  # site -> live members
    channels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # channel -> sites
    postgres: PgState = NOT_CONFIGURED
    # node holding batches -> the site it claimed them for (its carriers saw their references);
    # read only when a node that is no longer a member holds batches
    owner_sites: Mapping[str, str] = field(default_factory=dict)
    # live members that say they are cut from the store while others reach it: they have
    # stopped sending (nodes/store_health.py)
    store_cut: frozenset[str] = frozenset()

    @property
    def held(self) -> int:
        return sum(self.in_flight.values())


def site_health(members: Iterable[MemberInfo], known_sites: Iterable[str] = ()
                ) -> dict[str, int]:
    """Live members per site, sorted by site; a known site without live members counts 0."""
    counts = dict.fromkeys(known_sites, 0)
    for m in members:
        counts[m.site] = counts.get(m.site, 0) + 1
    return dict(sorted(counts.items()))


def carrier_health(members: Iterable[MemberInfo]) -> dict[str, tuple[str, ...]]:
    """Per channel (the product's channels first, then any other a member reports), the sorted
    sites where at least one live member has it working; () where it works nowhere."""
    where: dict[str, set[str]] = {c: set() for c in CHANNELS}
    for m in members:
        for channel in m.carriers:
            where.setdefault(channel, set()).add(m.site)
    return {c: tuple(sorted(sites)) for c, sites in where.items()}


def describe_sites(sites: Mapping[str, int]) -> str:
    """``marseille 2, paris 0``."""
    return ", ".join(f"{site} {count}" for site, count in sites.items())


def describe_members(snap: Snapshot) -> str:
    """``4 members (marseille 2, paris 2)``."""
    sites = describe_sites(snap.sites)
    count = len(snap.members)
    return f"{count} member{'' if count == 1 else 's'}" + (f" ({sites})" if sites else "")


def describe_channels(channels: Mapping[str, tuple[str, ...]]) -> str:
    """``sms in marseille+paris, email in paris, voice nowhere``."""
    return ", ".join(f"{c} in {'+'.join(sites)}" if sites else f"{c} nowhere"
                     for c, sites in channels.items())


def describe(snap: Snapshot) -> str:
    """The snapshot in one clause: members per site, PostgreSQL, carriers."""
    parts = [describe_members(snap), snap.postgres.describe()]
    channels = describe_channels(snap.channels)
    return ", ".join(parts + ([channels] if channels else []))
