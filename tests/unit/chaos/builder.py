"""A small builder of synthetic histories for the checkers' unit tests: a campaign of a few
recipients in batches, claims, outcomes, submissions, faults, heals, final reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chaos.history import History, Op

T0 = 1_800_000_000.0


@dataclass
class Run:
    h: History = field(default_factory=History)
    finals: dict[int, dict[str, Any]] = field(default_factory=dict)

    def launch(self, campaign: int, recipients: int, at: float = 0.0) -> Op:
        self.h.add("workload:0", "invoke", "launch", {"population": recipients,
                                                      "scenario": "s"}, at=T0 + at)
        return self.h.add("workload:0", "ok", "launch", {"campaign": campaign,
                                                         "recipients": recipients}, at=T0 + at)

    def claim(self, batch: int, epoch: int, node: str, at: float, *, kind: str = "claim",
              lease_s: float = 45.0, site: str = "paris", **extra: Any) -> Op:
        return self.h.add(f"node:{node}", "ok", "claim", {
            "batch": batch, "epoch": epoch, "node": node, "site": site, "kind": kind,
            "lease_until": T0 + at + lease_s if kind in ("claim", "renew") else None,
            "prev_owner": None, "prev_epoch": None, **extra}, at=T0 + at)

    def outcome(self, campaign: int, recipient: int, at: float, *, batch: int = 1,
                epoch: int = 1, node: str = "paris-node1", final: bool = True,
                cmid: str | None = "m", state: str = "delivered", attempt: int = 0) -> Op:
        ref = f"{campaign}:{recipient}:sms:{attempt}"
        value = {"campaign": campaign, "recipient": recipient, "reference": ref,
                 "channel": "sms", "state": state, "carrier_message_id": cmid, "epoch": epoch,
                 "node": node, "site": "paris", "batch": batch, "recorded_at": T0 + at,
                 "final": final}
        fin = self.finals.setdefault(campaign, {"campaign": campaign, "finals": {},
                                                "attempts": {}, "pending": 0,
                                                "batch_members": {}})
        if final:
            fin["finals"].setdefault(str(recipient), ref)
        fin["attempts"][ref] = {"carrier_message_id": cmid, "epoch": epoch,
                                "recorded_at": T0 + at, "state": state}
        fin["batch_members"].setdefault(str(batch), [])
        if recipient not in fin["batch_members"][str(batch)]:
            fin["batch_members"][str(batch)].append(recipient)
        return self.h.add("observer", "ok", "outcome", value, at=T0 + at + 0.05)

    def read(self, at: float) -> Op:
        return self.h.add("observer", "ok", "read", {"db_time": T0 + at}, at=T0 + at)

    def submit(self, site: str, reference: str, at: float, resubmission: bool = False) -> Op:
        return self.h.add(f"carrier:{site}", "ok", "submit", {
            "site": site, "channel": "sms", "reference": reference, "message_id": "x",
            "resubmission": resubmission, "seq": len(self.h)}, at=T0 + at)

    def fault(self, at: float, **value: Any) -> Op:
        return self.h.add("nemesis", "invoke", "fault", {"name": "kill", **value}, at=T0 + at)

    def heal(self, at: float) -> Op:
        return self.h.add("nemesis", "ok", "heal", {"name": "kill"}, at=T0 + at)

    def complete(self, campaign: int, at: float) -> Op:
        return self.h.add("observer", "ok", "complete", {"campaign": campaign,
                                                         "state": "completed"}, at=T0 + at)

    def final(self, campaign: int, recipients: int, at: float = 100.0,
              **override: Any) -> Op:
        value = dict(self.finals.get(campaign, {"campaign": campaign, "finals": {},
                                                "attempts": {}, "pending": 0}))
        value["recipients"] = recipients
        value.update(override)
        return self.h.add("observer", "ok", "final", value, at=T0 + at)
