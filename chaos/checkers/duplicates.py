"""Duplicates as a person would receive them: every re-submission of a reference, at one site
or across both, counted as a carrier that does not deduplicate delivers it (the simulators'
submission logs, whatever their ``--dedup`` answered).

The bound. After a fault, what the failed side had in flight may be sent again: the
recipients of the batches the failed nodes held at the fault, or claimed after it until its
heal (a cut-off node claims on until it fences itself), that had no final outcome at the fault
(claim log, observer). Every duplicated reference must belong to such a recipient, and the
count must not exceed their number (plus ``tolerance``). Without a fault the bound is 0.

The failed nodes are the fault ops' ``value.nodes``; a fault naming ``value.site`` fails every
node that claimed for that site. Unknown: a ``gap`` in a carrier's log (submissions missed).
"""

from __future__ import annotations

from collections import defaultdict

from chaos.checkers.holdings import held_at
from chaos.checkers.verdict import Offence, Verdict, judge, recipient_of
from chaos.history import History, Op

NAME = "duplicates"


def failed_nodes(history: History, fault: Op) -> set[str]:
    nodes = {str(n) for n in fault.value.get("nodes", ())}
    site = fault.value.get("site")
    if site is not None:
        nodes |= {str(op.value["node"]) for op in history.of("claim", "ok")
                  if op.value.get("site") == site}
    return nodes


def check(history: History, tolerance: int = 0) -> Verdict:
    unknowns = [Offence(f"{op.value.get('source')}: {op.value.get('lost')} operations missed",
                        (op.index,)) for op in history.of("gap") if
                str(op.value.get("source", "")).startswith("carrier")]
    by_ref: dict[str, list[Op]] = defaultdict(list)
    for op in history.of("submit", "ok"):
        by_ref[f"{op.value['channel']}|{op.value['reference']}"].append(op)
    same_site = cross_site = 0
    dup_refs: dict[str, list[Op]] = {}
    for key, ops in by_ref.items():
        if len(ops) < 2:
            continue
        dup_refs[key] = ops
        sites = {op.value["site"] for op in ops}
        extra = len(ops) - 1
        cross = min(extra, len(sites) - 1)
        cross_site += cross
        same_site += extra - cross
    total = same_site + cross_site
    # Who was in flight at each fault, and which of them had no final outcome yet.
    in_flight: set[int] = set()
    heals = sorted(op.at for op in history.of("heal"))
    for fault in history.of("fault", "invoke"):
        nodes = failed_nodes(history, fault)
        batches = {b for b, holder in held_at(history, fault.at).items() if holder.node in nodes}
        healed = next((at for at in heals if at > fault.at), float("inf"))
        batches |= {int(op.value["batch"]) for op in history.of("claim", "ok")
                    if op.value.get("kind") == "claim" and str(op.value.get("node")) in nodes
                    and fault.at < op.at <= healed}
        done = {int(op.value["recipient"]) for op in history.of("outcome", "ok")
                if op.value.get("final") and float(op.value["recorded_at"]) <= fault.at}
        in_flight |= {int(op.value["recipient"]) for op in history.of("outcome", "ok")
                      if int(op.value["batch"]) in batches} - done
        in_flight |= _members(history, batches) - done
    offences = []
    for key, ops in dup_refs.items():
        rid = recipient_of(ops[0].value["reference"])
        if rid not in in_flight:
            offences.append(Offence(
                f"{key.replace('|', ' ')} submitted {len(ops)} times, its recipient was not in "
                "flight on a failed node", tuple(op.index for op in ops)))
    bound = len(in_flight) + tolerance
    if total > bound:
        offences.insert(0, Offence(f"{total} duplicate deliveries exceed the bound {bound}",
                                   tuple(op.index for ops in dup_refs.values() for op in ops)))
    figures = {"duplicates": total, "same_site": same_site, "cross_site": cross_site,
               "bound": bound, "references_submitted": len(by_ref)}
    return judge(NAME, offences, unknowns, figures,
                 f"{total} duplicate deliveries ({same_site} same site, {cross_site} across "
                 f"sites) within the bound {bound}")


def _members(history: History, batches: set[int]) -> set[int]:
    """Recipients of ``batches`` as the final read lists them (``batch_members``)."""
    out: set[int] = set()
    for op in history.of("final", "ok"):
        members = op.value.get("batch_members", {})
        for b in batches:
            out |= {int(r) for r in members.get(str(b), ())}
    return out
