"""The watchdog moved the work: the batches a dead node held at the fault were taken over
(moved by the watchdog, or claimed at a newer epoch by another node) before their lease would
have expired. A takeover at or after the lease deadline proves nothing: any node may claim an
expired batch, with or without a watchdog.

Input: fault ``invoke`` ops naming ``value.nodes`` (or ``value.site``), and the claim log
(``claim`` ops: claims and renewals with ``lease_until``, moves). ``margin_s``: the takeover
must come that long before the deadline. Unknown: the dead nodes held no batch at the fault.
"""

from __future__ import annotations

from chaos.checkers.duplicates import failed_nodes
from chaos.checkers.holdings import held_at
from chaos.checkers.verdict import Offence, Verdict, judge
from chaos.history import History

NAME = "watchdog"


def check(history: History, margin_s: float = 0.0) -> Verdict:
    offences: list[Offence] = []
    unknowns: list[Offence] = []
    log = sorted(history.of("claim", "ok"), key=lambda o: o.at)
    delays: list[float] = []
    faults = [f for f in history.of("fault", "invoke") if failed_nodes(history, f)]
    if not faults:
        return judge(NAME, [], [Offence("no fault names a node or a site")], {}, "")
    for fault in faults:
        nodes = failed_nodes(history, fault)
        held = {b: h for b, h in held_at(history, fault.at).items() if h.node in nodes}
        if not held:
            unknowns.append(Offence(f"{', '.join(sorted(nodes))} held no batch at the fault",
                                    (fault.index,)))
            continue
        for batch, holder in sorted(held.items()):
            # a batch its holder finished (or handed back) after the fault, before anyone took
            # it over, needed no takeover: its last writes reached the store as the fault began
            ended = next((op for op in log if op.at > fault.at
                          and int(op.value["batch"]) == batch
                          and op.value["kind"] in ("finish", "release")
                          and int(op.value["epoch"]) == holder.epoch
                          and str(op.value["node"]) == holder.node), None)
            if ended is not None:
                continue
            takeover = next((op for op in log if op.at > fault.at
                             and int(op.value["batch"]) == batch
                             and ((op.value["kind"] == "move"
                                   and int(op.value["epoch"]) == holder.epoch)
                                  or (op.value["kind"] == "claim"
                                      and int(op.value["epoch"]) > holder.epoch))), None)
            if takeover is None:
                offences.append(Offence(f"batch {batch} of {holder.node} never taken over",
                                        (fault.index, holder.op.index)))
                continue
            delays.append(takeover.at - fault.at)
            if holder.lease_until is not None \
                    and takeover.at > holder.lease_until - margin_s:
                offences.append(Offence(
                    f"batch {batch} of {holder.node} taken over {takeover.at - fault.at:.1f} s "
                    f"after the fault, {takeover.at - holder.lease_until:+.1f} s from its "
                    "lease deadline: lease expiry, not the watchdog",
                    (fault.index, holder.op.index, takeover.index)))
    figures = {"batches": len(delays), "max_takeover_s": max(delays) if delays else None}
    return judge(NAME, offences, unknowns, figures,
                 f"{len(delays)} batches taken over before their lease deadline "
                 f"(slowest {max(delays, default=0):.1f} s after the fault)")
