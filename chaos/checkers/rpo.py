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
change. Unknown: no fault, or no ``final`` read of a campaign whose outcomes were seen. Only the
campaigns the run launched are judged (when it launched any): an earlier run's campaign has no
final read here.

Without a synchronous copy (``exposure``: the double fault, Patroni without
``synchronous_mode_strict``). While PostgreSQL has no synchronous standby, an acknowledged write
lives on one site only, and losing that site loses it: the checker then reports what was lost
instead of calling it a violation, bounded by what was written in those windows. A window opens
at the fault that preceded the watchdog's ``postgres.sync_lost`` record (Patroni drops the
standby a few seconds after losing it, the record comes a cycle later) and closes at
``postgres.sync_restored`` or at the run's end; an outcome counts as written in it when the
observer first saw it there. A loss outside every window is still invalid; so is one larger
than the bound.
"""

from __future__ import annotations

from chaos.checkers.verdict import Offence, Verdict, judge
from chaos.history import History, Op

NAME = "rpo"


def exposure_windows(history: History) -> list[tuple[float, float]]:
    """When PostgreSQL had no synchronous copy, as the watchdog recorded it (see above)."""
    faults = sorted(op.at for op in history.of("fault", "invoke"))
    end = max((op.at for op in history.ops), default=0.0)
    windows: list[tuple[float, float]] = []
    opened: float | None = None
    for op in sorted(history.of("event", "ok"), key=lambda o: o.at):
        kind = op.value.get("kind")
        if kind == "postgres.sync_lost" and opened is None:
            before = [f for f in faults if f <= op.at]
            opened = before[-1] if before else op.at
        elif kind == "postgres.sync_restored" and opened is not None:
            windows.append((opened, op.at))
            opened = None
    if opened is not None:
        windows.append((opened, end))
    return windows


def check(history: History, max_window_s: float | None = None,
          exposure: bool = False) -> Verdict:
    offences: list[Offence] = []
    unknowns: list[Offence] = []
    faults = history.of("fault", "invoke")
    if not faults:
        return judge(NAME, [], [Offence("no fault in the history")], {}, "")
    launched = {int(op.value["campaign"]) for op in history.of("launch", "ok")}
    windows = exposure_windows(history) if exposure else []

    def exposed(op: Op) -> bool:
        return any(start <= op.at <= end for start, end in windows)

    lost_exposed: list[Op] = []
    finals: dict[int, Op] = {}
    for op in history.of("final", "ok"):
        finals[int(op.value["campaign"])] = op
    reads = sorted(history.of("read", "ok"), key=lambda op: op.at)
    windows_s = []
    checked: set[str] = set()
    for fault in faults:
        before = [r for r in reads if r.at <= fault.at]
        if not before:
            unknowns.append(Offence(f"no read of the store before the fault at {fault.at:.3f}",
                                    (fault.index,)))
            continue
        window = fault.at - before[-1].at
        windows_s.append(window)
        if max_window_s is not None and window > max_window_s:
            unknowns.append(Offence(
                f"last read {window:.3f} s before the fault (more than {max_window_s:g} s): "
                "outcomes committed in between are not covered", (before[-1].index,
                                                                  fault.index)))
        for op in history.of("outcome", "ok"):
            if op.at > fault.at or op.value["reference"] in checked:
                continue
            if launched and int(op.value["campaign"]) not in launched:
                continue
            checked.add(op.value["reference"])
            offence = _compare(op, finals.get(int(op.value["campaign"])))
            if offence == "no final read":
                unknowns.append(Offence(f"campaign {op.value['campaign']}: no final read",
                                        (op.index,)))
            elif offence is not None and exposed(op):
                lost_exposed.append(op)
            elif offence is not None:
                final = finals[int(op.value["campaign"])]
                offences.append(Offence(offence, (op.index, final.index, fault.index)))
    figures: dict[str, object] = {"outcomes_checked": len(checked),
                                  "window_s": max(windows_s) if windows_s else None,
                                  "faults": len(faults)}
    if not exposure:
        return judge(NAME, offences, unknowns, figures,
                     f"{len(checked)} outcomes committed before the fault(s) all kept")
    written = sum(1 for op in history.of("outcome", "ok") if exposed(op)
                  and (not launched or int(op.value["campaign"]) in launched))
    figures |= {"lost_exposed": len(lost_exposed), "written_exposed": written,
                "exposure_s": round(sum(e - s for s, e in windows), 3)}
    if len(lost_exposed) > written:
        offences.insert(0, Offence(f"{len(lost_exposed)} outcomes lost, more than the "
                                   f"{written} written without a synchronous copy",
                                   tuple(op.index for op in lost_exposed)))
    return judge(NAME, offences, unknowns, figures,
                 f"{len(checked)} outcomes committed before the fault(s): "
                 f"{len(lost_exposed)} lost, all written while PostgreSQL had no synchronous "
                 f"copy (bound {written} written then, {figures['exposure_s']} s)")


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
