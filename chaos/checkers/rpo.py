"""No acknowledged outcome is lost: every outcome the observer saw committed before (or at) a
fault is still there at the end with the SAME carrier message id, epoch and recorded time,
which a resend after the fault could not regenerate (a resend reuses the reference).

The window. The observer sees what was committed when it reads; an outcome committed after
its last read before the fault and before the fault itself is not known to have been
committed. The runner closes that window by having the observer read just before it
injects (``Observer.read_now``); this checker measures what is left of it: the time between
the end of the last ``read`` (database clock) and the fault. With ``max_window_s`` given, a
window larger than that makes the verdict ``unknown`` (not proven up to the instant).

A carrier message id seen as null may be filled later by a receipt; one seen set must not
change. Unknown: no fault, or no ``final`` read of a campaign whose outcomes were seen.
"""

from __future__ import annotations

from chaos.checkers.verdict import Offence, Verdict, judge
from chaos.history import History, Op

NAME = "rpo"


def check(history: History, max_window_s: float | None = None) -> Verdict:
    offences: list[Offence] = []
    unknowns: list[Offence] = []
    faults = history.of("fault", "invoke")
    if not faults:
        return judge(NAME, [], [Offence("no fault in the history")], {}, "")
    finals: dict[int, Op] = {}
    for op in history.of("final", "ok"):
        finals[int(op.value["campaign"])] = op
    reads = sorted(history.of("read", "ok"), key=lambda op: op.at)
    windows = []
    checked: set[str] = set()
    for fault in faults:
        before = [r for r in reads if r.at <= fault.at]
        if not before:
            unknowns.append(Offence(f"no read of the store before the fault at {fault.at:.3f}",
                                    (fault.index,)))
            continue
        window = fault.at - before[-1].at
        windows.append(window)
        if max_window_s is not None and window > max_window_s:
            unknowns.append(Offence(
                f"last read {window:.3f} s before the fault (more than {max_window_s:g} s): "
                "outcomes committed in between are not covered", (before[-1].index,
                                                                  fault.index)))
        for op in history.of("outcome", "ok"):
            if op.at > fault.at or op.value["reference"] in checked:
                continue
            checked.add(op.value["reference"])
            offence = _compare(op, finals.get(int(op.value["campaign"])))
            if offence == "no final read":
                unknowns.append(Offence(f"campaign {op.value['campaign']}: no final read",
                                        (op.index,)))
            elif offence is not None:
                final = finals[int(op.value["campaign"])]
                offences.append(Offence(offence, (op.index, final.index, fault.index)))
    figures = {"outcomes_checked": len(checked),
               "window_s": max(windows) if windows else None, "faults": len(faults)}
    return judge(NAME, offences, unknowns, figures,
                 f"{len(checked)} outcomes committed before the fault(s) all kept")


def _compare(op: Op, final: Op | None) -> str | None:
    if final is None:
        return "no final read"
    ref = op.value["reference"]
    now = final.value["attempts"].get(ref)
    if now is None:
        return f"outcome {ref} (committed, epoch {op.value['epoch']}) is gone"
    seen_cmid = op.value.get("carrier_message_id")
    if seen_cmid is not None and now.get("carrier_message_id") != seen_cmid:
        return (f"outcome {ref}: carrier message id {seen_cmid} became "
                f"{now.get('carrier_message_id')} (resent after being lost?)")
    if int(now["epoch"]) != int(op.value["epoch"]):
        return f"outcome {ref}: epoch {op.value['epoch']} became {now['epoch']}"
    if abs(float(now["recorded_at"]) - float(op.value["recorded_at"])) > 1e-6:
        return f"outcome {ref}: recorded time changed"
    return None
