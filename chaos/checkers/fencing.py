"""Fencing: no write from a holder whose epoch was superseded is accepted.

Input: the claim log (``claim`` ops: each claim with its epoch, and each accepted fenced write,
kind ``write``/``finish``, with the epoch it carried and the batch's epoch when the database
accepted it) and ``stale_write`` ops (the refusals). A write is stale if it carried an epoch
older than the batch's current one when it was accepted, or older than a claim of that batch
logged before it. Observed ``outcome`` ops whose epoch is older than a claim made before their
write are named too, when a write entry ties them in time.

``expect_refusals``: the scenario made a zombie write (a frozen node woken after its batches
moved); zero refusals then means fencing was not exercised: unknown.
"""

from __future__ import annotations

from collections import defaultdict

from chaos.checkers.verdict import Offence, Verdict, judge
from chaos.history import History, Op

NAME = "fencing"
WRITES = ("write", "finish")


def check(history: History, expect_refusals: bool = False) -> Verdict:
    offences: list[Offence] = []
    claims: dict[int, list[Op]] = defaultdict(list)
    log = sorted(history.of("claim", "ok"), key=lambda o: o.at)
    for op in log:
        if op.value["kind"] == "claim":
            claims[int(op.value["batch"])].append(op)
    accepted = 0
    for op in log:
        v = op.value
        if v["kind"] not in WRITES:
            continue
        accepted += 1
        batch, epoch = int(v["batch"]), int(v["epoch"])
        current = v.get("current_epoch")
        newer = next((c for c in claims[batch]
                      if int(c.value["epoch"]) > epoch and c.at <= op.at), None)
        if current is not None and int(current) > epoch:
            offences.append(Offence(
                f"batch {batch}: {v['kind']} of {v['node']} with epoch {epoch} accepted while "
                f"the batch was at epoch {current}", (op.index,) + ((newer.index,) if newer
                                                                    else ())))
        elif newer is not None:
            offences.append(Offence(
                f"batch {batch}: {v['kind']} of {v['node']} with epoch {epoch} accepted after "
                f"{newer.value['node']} claimed it at epoch {newer.value['epoch']}",
                (newer.index, op.index)))
    refusals = history.of("stale_write", "ok")
    unknowns = []
    if expect_refusals and not refusals and not offences:
        unknowns.append(Offence("no stale write was refused: fencing was not exercised"))
    figures = {"refused": len(refusals), "accepted_writes": accepted,
               "accepted_stale": len(offences)}
    return judge(NAME, offences, unknowns, figures,
                 f"{accepted} fenced writes accepted, none stale; {len(refusals)} stale "
                 "writes refused")
