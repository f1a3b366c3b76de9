"""What the evidence tests share: site and witness keys, a ledger with events, a synthetic
drill written through the same call a drill uses, checkpoints cosigned by a real witness core,
and the bundle of it all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from failover.evidence import keys
from failover.evidence.bundle import collect, write
from failover.evidence.checkpointer import Checkpointer
from failover.evidence.ledger import Ledger
from failover.evidence.records import append_record
from failover.evidence.witness import WitnessCore
from failover.evidence.witness_client import LocalWitness

ORIGIN = "tenir.invalid/lab/ledger"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def synthetic_drill(record_id: str = "drill-2026-11-20-site-loss") -> dict[str, Any]:
    """A site-loss drill as issue 10's drill runner will describe it."""
    t = T0
    steps = [("announce the drill to the on-call cell", 0, 30),
             ("launch campaign 7 (20,000 recipients)", 30, 45),
             ("power cut: SIGKILL every process of paris", 45, 46),
             ("PostgreSQL primary promoted in marseille", 46, 67),
             ("campaign 7 resumed from marseille", 67, 70),
             ("paris restarted, rejoined as synchronous standby", 70, 160)]
    return {
        "type": "drill", "id": record_id, "drill_type": "site-loss",
        "scope": {"description": "loss of the paris datacenter during a live campaign",
                  "sites": ["paris"], "services": ["postgres", "alert_nodes", "haproxy"]},
        "targets": {"rto_s": 60, "rpo_s": 0},
        "approver": "Claire Martin (RSSI)", "runner": "astreinte-2",
        "started_at": iso(t), "ended_at": iso(t + timedelta(seconds=160)),
        "steps": [{"name": n, "started_at": iso(t + timedelta(seconds=a)),
                   "ended_at": iso(t + timedelta(seconds=b)), "outcome": "ok"}
                  for n, a, b in steps],
        "measured": {"rto_s": 21.4, "rpo_s": 0},
        "verdicts": [
            {"invariant": "no acknowledged outcome lost (RPO 0)", "verdict": "pass",
             "detail": "20,000 of 20,000 acknowledged rows found after the takeover"},
            {"invariant": "no recipient alerted twice by both sites", "verdict": "pass"},
            {"invariant": "deliveries resumed within the RTO target", "verdict": "pass"},
        ],
        "findings": [{"id": "F1", "criticality": "medium",
                      "description": "the on-call SMS announcing the drill left 12 s late",
                      "corrective_action": {"description": "pre-stage the announcement",
                                            "owner": "astreinte", "due": "2026-12-15T00:00:00Z",
                                            "status": "open"}}],
        "campaigns_in_flight": [7],
    }


def schedule(record_id: str, due: datetime) -> dict[str, Any]:
    return {"type": "schedule", "id": record_id, "drill_type": "site-loss",
            "scope": {"description": "loss of a datacenter", "sites": ["paris"]},
            "due": iso(due)}


@dataclass
class Kit:
    paris: keys.Signer
    witness: keys.Signer
    checkpointer: Checkpointer
    witness_core: WitnessCore

    @property
    def vkeys(self) -> list[str]:
        return [self.paris.verifier.vkey, self.witness.verifier.vkey]


def make_kit(ledger: Ledger, tmp: Path, paris: keys.Signer | None = None,
             witness: keys.Signer | None = None) -> Kit:
    paris = paris or keys.generate("tenir/paris")
    witness = witness or keys.generate("tenir/witness", keys.COSIGNATURE_V1)
    core = WitnessCore(witness, {ORIGIN: [paris.verifier]}, tmp / "witness-state.json",
                       clock=lambda: 1_764_000_000)
    cp = Checkpointer(ledger, paris, origin=ORIGIN, node="paris-node1", site="paris",
                      witness=LocalWitness(core), witness_key=witness.verifier)
    return Kit(paris, witness, cp, core)


async def fill(ledger: Ledger, kit: Kit, events: int = 10) -> None:
    """Key announcement, events, a schedule, the synthetic drill, checkpoints along the way."""
    await kit.checkpointer.announce_key()
    await append_record(ledger, schedule("plan-2026-q4-site-loss", T0), kit.paris,
                        actor="operator:plan01", node="paris-node1", site="paris")
    await append_record(ledger, schedule("plan-2026-q4-switchover", T0 + timedelta(days=7)),
                        kit.paris, actor="operator:plan01", node="paris-node1", site="paris")
    for i in range(events // 2):
        await ledger.append("watchdog.move", f"moved {i + 1} batches of paris-node{i % 2 + 1}",
                            actor="node:marseille-node1", node="marseille-node1",
                            site="marseille", details={"moved": {f"paris-node{i % 2 + 1}": i + 1},
                                                       "campaigns": {"7": {"paris-node1": 2}}})
    await kit.checkpointer.once()
    await append_record(ledger, synthetic_drill(), kit.paris, actor="operator:run02",
                        node="paris-node1", site="paris")
    for i in range(events - events // 2):
        await ledger.append("operator.switchover", f"switchover {i}", actor="operator:run02",
                            node="paris-node2", site="paris")
    await kit.checkpointer.once()


async def export(ledger: Ledger, kit: Kit, out: Path) -> Path:
    bundle = await collect(ledger, origin=ORIGIN, keys=kit.vkeys, since=None, until=None)
    write(bundle, out)
    return out
