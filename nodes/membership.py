"""Membership and self-fencing of an alert node.

The node joins the coordination service under a lease (etcd) or session (ZooKeeper). It may send
only while the server confirmed that membership less than ``ttl - safety`` seconds ago: past that,
the dispatcher sends nothing more, before the membership can expire and the watchdog hand the
node's batches to others. The gate logs each change, saying why.
"""

from __future__ import annotations

import logging

from cluster.coordination.base import Coordinator

log = logging.getLogger("tenir.membership")


class MembershipGate:
    """The dispatcher's ``DispatchGate`` backed by the coordination membership."""

    def __init__(self, coordinator: Coordinator, safety: float, node: str, site: str) -> None:
        self.coordinator = coordinator
        self.safety = safety
        self.extra = {"node": node, "site": site}
        self._open: bool | None = None
        self.closed_count = 0

    def may_dispatch(self) -> bool:
        ok = self.coordinator.may_act(self.safety)
        if ok != self._open:
            age = self.coordinator.membership_age()
            ttl = self.coordinator.settings.ttl
            if ok:
                log.info("membership confirmed %.1f s ago: dispatching", age, extra=self.extra)
            else:
                self.closed_count += 1
                log.warning("self-fencing: membership last confirmed %.1f s ago, ttl %.1f s, "
                            "safety %.1f s: no more sending until it is renewed", age, ttl,
                            self.safety, extra=self.extra)
            self._open = ok
        return ok
