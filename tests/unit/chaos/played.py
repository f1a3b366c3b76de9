"""A fake environment for the chaos runner's unit tests: a fake lab and firewall, and
collectors that play each launched campaign into the history (claims, submissions, outcomes,
completion), holding at 3/4 until the faults are healed so that a fault lands between the middle
and the end however slow the machine. ``late``: a node that claims its batch only some reads
after the 3/4, to test that a node fault waits for its node to hold one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from chaos.history import History
from chaos.matrix import Roles, Tools
from chaos.workload import Refused
from cluster.member_probe import MemberHealth
from cluster.topology import Topology
from tests.fakes.lab import FakeFirewall, FakeLab

RECIPIENTS = 40
LATE_READS = 50  # 0.5 s of the collectors' loop: after the runner has seen the middle


class PlayedCampaign:
    """Collectors that play every launched campaign in turn: 4 batches of 10 (paris-node1,
    paris-node2, marseille-node1, marseille-node2), 8 final outcomes per tick, completed at the
    end; the first campaign holds at 3/4 until a heal comes after its launch; every read ends
    with a ``read`` op. ``stall``: nothing moves."""

    NODES = ("paris-node1", "paris-node2", "marseille-node1", "marseille-node2")

    def __init__(self, history: History, stall: bool = False, late: str | None = None) -> None:
        self.h = history
        self.stall = stall
        self.late = late  # a node that claims only LATE_READS reads after the 3/4
        self._held_reads = 0
        self.done: dict[int, int] = {}
        self.attempts: dict[int, dict[str, dict[str, Any]]] = {}
        self.batches = 0

    def _playing(self) -> tuple[int, float] | None:
        """The first launched campaign not completed yet, and its launch time."""
        completed = {op.value["campaign"] for op in self.h.of("complete")}
        return next(((int(op.value["campaign"]), op.at) for op in self.h.of("launch", "ok")
                     if op.value["campaign"] not in completed), None)

    def tick(self) -> None:
        playing = self._playing()
        if self.stall or playing is None:
            return
        campaign, launched = playing
        first = self.h.of("launch", "ok")[0].value["campaign"] == campaign
        healed = any(op.at >= launched for op in self.h.of("heal", "ok"))
        limit = RECIPIENTS if healed or not first else RECIPIENTS * 3 // 4
        done = self.done.setdefault(campaign, 0)
        attempts = self.attempts.setdefault(campaign, {})
        if done == 0:
            for node in self.NODES:
                if node != self.late:
                    self._claim(node)
        elif done == RECIPIENTS * 3 // 4 and self.late is not None:
            self._held_reads += 1
            if self._held_reads >= LATE_READS:
                self._claim(self.late)
                self.late = None
        for _ in range(8):
            if done >= limit:
                break
            rid = done + 1
            node = self.NODES[done // 10]
            site = node.split("-")[0]
            ref = f"{campaign}:{rid}:sms:0.0"
            attempts[ref] = {"carrier_message_id": f"m{campaign}-{rid}", "epoch": 1,
                             "recorded_at": 1000.0 + rid, "state": "delivered"}
            self.h.add(f"carrier:{site}", "ok", "submit", {
                "site": site, "channel": "sms", "reference": ref,
                "message_id": f"m{campaign}-{rid}", "resubmission": False, "seq": rid})
            self.h.add("observer", "ok", "outcome", {
                "campaign": campaign, "recipient": rid, "reference": ref, "channel": "sms",
                "state": "delivered", "carrier_message_id": f"m{campaign}-{rid}", "epoch": 1,
                "node": node, "site": site, "batch": self.batches - 3 + done // 10,
                "recorded_at": 1000.0 + rid, "final": True})
            done += 1
        self.done[campaign] = done
        if done >= RECIPIENTS:
            self.h.add("observer", "ok", "complete", {"campaign": campaign,
                                                      "state": "completed",
                                                      "completed_at": 0.0})

    def _claim(self, node: str) -> None:
        self.batches += 1
        self.h.add(f"node:{node}", "ok", "claim", {
            "batch": self.batches, "epoch": 1, "node": node, "site": node.split("-")[0],
            "kind": "claim", "lease_until": self.h.ops[-1].at + 45, "prev_owner": None,
            "prev_epoch": None})

    async def read_all(self) -> None:
        self.tick()
        self.h.add("observer", "ok", "read", {"db_time": 0.0})

    async def final(self, campaign: int) -> None:
        done = self.done.get(campaign, 0)
        self.h.add("observer", "ok", "final", {
            "campaign": campaign, "recipients": RECIPIENTS, "pending": RECIPIENTS - done,
            "finals": {str(i): f"{campaign}:{i}:sms:0.0" for i in range(1, done + 1)},
            "attempts": dict(self.attempts.get(campaign, {})), "batch_members": {}})


class FakeEnv:
    def __init__(self, lab: FakeLab, refuse: bool = False, stall: bool = False,
                 late: str | None = None) -> None:
        self.lab = lab
        self.stall = stall
        self.late = late
        self.backend = "etcd"
        self.tools = Tools(firewall=FakeFirewall(log=lab.log), probe=leader)
        self.refuse = refuse
        self.played: PlayedCampaign | None = None
        self.launched = 6

    @property
    def datacenter_sites(self) -> Sequence[str]:
        return ["marseille", "paris"]

    def prepare(self) -> None:
        self.lab.log.append("prepare")

    def roles(self) -> Roles:
        self.lab.log.append("roles")
        return Roles(primary="paris", standby="marseille")

    @contextlib.asynccontextmanager
    async def collect(self, history: History) -> AsyncIterator[PlayedCampaign]:
        self.played = PlayedCampaign(history, self.stall, self.late)
        stop = asyncio.Event()

        async def loop() -> None:
            while not stop.is_set():
                await self.played.read_all()  # type: ignore[union-attr]
                await asyncio.sleep(0.01)

        task = asyncio.create_task(loop())
        try:
            yield self.played
        finally:
            stop.set()
            await task

    async def launch(self, population: int, scenario: str, batch_size: int) -> tuple[int, int]:
        if self.refuse:
            raise Refused("400 scenario: unknown")
        self.launched += 1
        await asyncio.sleep(0)
        return self.launched, population


def leader(_topo: Topology) -> list[MemberHealth]:
    return [MemberHealth("paris-db", "x", True, True, "1")]


