"""The checks a drill makes before it acts (its steady-state hypothesis), as pure functions of
one read of the cluster (:class:`Facts`). Each returns a :class:`Check` whose sentence says what
was seen, so that a refusal names every reason at once:

* the coordination quorum has a spare member (a drill may take one away);
* the synchronous standby streams, with a lag of at most ``max_lag_bytes`` (0 by default);
* every datacenter site has live alert nodes whose carriers work on every channel;
* no site is drained;
* no real campaign of the configured priority or a more urgent one is running (the drill's own
  campaigns are not real).

``whole`` (after a heal) asks more: every coordination member healthy, every HAProxy routing
only to the primary, a given site's PostgreSQL as the streaming synchronous standby.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from failover.drills.facts import Facts, Sites
from replication.store_api import CHANNELS


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    sentence: str

    def to_json(self) -> dict[str, object]:
        return {"check": self.name, "ok": self.ok, "sentence": self.sentence}


def quorum_has_spare(f: Facts) -> Check:
    name = "quorum_has_spare"
    total = len(f.coordination)
    if not total:
        return Check(name, False, "the coordination service could not be read")
    healthy = [m for m in f.coordination if m.healthy]
    quorum = total // 2 + 1
    down = ", ".join(f"{m.name} ({m.site})" for m in f.coordination if not m.healthy)
    if len(healthy) - quorum >= 1:
        return Check(name, True, f"{len(healthy)} of {total} coordination members healthy: "
                     f"one can be lost and {quorum} still make a quorum")
    return Check(name, False, f"only {len(healthy)} of {total} coordination members are "
                 f"healthy (down: {down or 'none'}): losing one more would leave no quorum of "
                 f"{quorum}")


def sync_standby_streaming(f: Facts, max_lag_bytes: int = 0) -> Check:
    name = "sync_standby_streaming"
    if f.postgres is None:
        return Check(name, False, "no Patroni REST API answered")
    primary, sync = f.primary, f.sync_standby
    if primary is None:
        return Check(name, False, "Patroni reports no PostgreSQL primary")
    if sync is None:
        return Check(name, False, f"primary {primary.name} has no synchronous standby: losing it "
                     "could lose acknowledged writes")
    if sync.state != "streaming":
        return Check(name, False, f"the synchronous standby {sync.name} is {sync.state}, not "
                     "streaming")
    if sync.lag_bytes is None or sync.lag_bytes > max_lag_bytes:
        lag = "unknown" if sync.lag_bytes is None else f"{sync.lag_bytes:,} bytes"
        return Check(name, False, f"the synchronous standby {sync.name} lags {lag} behind "
                     f"primary {primary.name} (at most {max_lag_bytes:,} allowed)")
    return Check(name, True, f"primary {primary.name} ({primary.site}), synchronous standby "
                 f"{sync.name} ({sync.site}) streaming with a lag of {sync.lag_bytes:,} bytes")


def carriers_healthy(f: Facts, sites: Sites, channels: Iterable[str] = CHANNELS) -> Check:
    name = "carriers_healthy"
    if f.nodes is None:
        return Check(name, False, "the alert nodes' cluster view could not be read")
    wanted = tuple(channels)
    problems, fine = [], []
    for site in sites.datacenters:
        members = [n for n in f.nodes if n.site == site]
        if not members:
            problems.append(f"site {site} has no live alert node")
            continue
        working = {c for n in members for c in n.channels}
        missing = [c for c in wanted if c not in working]
        if missing:
            problems.append(f"site {site}: no node's {', '.join(missing)} carrier works")
        else:
            fine.append(site)
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(name, True, f"{', '.join(wanted)} carriers work at {' and '.join(fine)}")


def no_site_drained(f: Facts) -> Check:
    name = "no_site_drained"
    if f.drained is None:
        return Check(name, False, "the drained sites could not be read")
    if f.drained:
        return Check(name, False, f"site {', '.join(f.drained)} is drained: a drill needs both "
                     f"sites taking work (tenir site undrain {f.drained[0]})")
    return Check(name, True, "no site is drained")


def no_real_campaign(f: Facts, priority: int, own: Iterable[int] = ()) -> Check:
    """``priority``: a running campaign of this priority or a more urgent one (1 is the most
    urgent) refuses the drill; a campaign whose priority is unknown counts as urgent."""
    name = "no_real_campaign"
    if f.campaigns is None:
        return Check(name, False, "the campaigns could not be read")
    mine = set(own)
    blocking = [c for c in f.campaigns if c.state in ("running", "paused")
                and c.id not in mine and (c.priority is None or c.priority <= priority)]
    if blocking:
        named = ", ".join(f"{c.id} ({c.scenario}, priority "
                          f"{'?' if c.priority is None else c.priority})" for c in blocking)
        return Check(name, False, f"real campaign {named} is running: a drill waits until no "
                     f"campaign of priority {priority} or more urgent runs")
    return Check(name, True, f"no real campaign of priority {priority} or more urgent runs")


def whole(f: Facts, sites: Sites, standby_site: str | None = None,
          primary_site: str | None = None) -> Check:
    """Everything back: every coordination member healthy, a primary (in ``primary_site`` if
    given) with a streaming synchronous standby (in ``standby_site`` if given), every HAProxy
    routing only to the primary."""
    name = "whole"
    problems = [f"coordination member {m.name} ({m.site}) is down"
                for m in f.coordination if not m.healthy]
    if not f.coordination:
        problems.append("the coordination service could not be read")
    primary, sync = f.primary, f.sync_standby
    if primary is None:
        problems.append("no PostgreSQL primary")
    elif primary_site is not None and primary.site != primary_site:
        problems.append(f"the primary {primary.name} is in {primary.site}, not {primary_site}")
    if sync is None or sync.state != "streaming":
        problems.append("no streaming synchronous standby")
    elif standby_site is not None and sync.site != standby_site:
        problems.append(f"the synchronous standby {sync.name} is in {sync.site}, not "
                        f"{standby_site}")
    if f.haproxy is None:
        problems.append("the HAProxies could not be read")
    elif primary is not None:
        problems += [f"HAProxy {h} routes to {', '.join(r) or 'nothing'}"
                     for h, r in f.haproxy.items() if list(r) != [primary.name]]
    if f.nodes is not None:
        for site in sites.datacenters:
            if not any(n.site == site for n in f.nodes):
                problems.append(f"site {site} has no live alert node")
    if problems:
        return Check(name, False, "; ".join(problems))
    assert primary is not None and sync is not None
    return Check(name, True, f"every coordination member healthy, primary {primary.name} "
                 f"({primary.site}) with {sync.name} ({sync.site}) as streaming synchronous "
                 "standby, every HAProxy routing only to it")


def refusal(checks: list[Check]) -> str | None:
    """The refusal in one text (every failed check's sentence), or None if all passed."""
    failed = [c for c in checks if not c.ok]
    if not failed:
        return None
    return "preflight refused: " + "; ".join(f"{c.name}: {c.sentence}" for c in failed)
