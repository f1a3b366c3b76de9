"""Progress: after the heal, each campaign completes within ``bound_s``.

Input: ``launch`` ok ops, ``complete`` ops and ``heal`` ok ops. Each campaign is measured from
the last heal before its completion (later than its launch), or from its launch when no heal
came in between (it completed through the fault, or there was none): a soak's many faults are
each judged against the campaigns they delayed. A campaign with no ``complete`` op, or one
completed later than the bound, is named; one never completed is measured from the last heal (or
fault) of the run.
"""

from __future__ import annotations

from chaos.checkers.verdict import Offence, Verdict, judge
from chaos.history import History, Op

NAME = "progress"


def check(history: History, bound_s: float) -> Verdict:
    heals = sorted(history.of("heal", "ok"), key=lambda o: o.at)
    faults = history.of("fault", "invoke")
    last: Op | None = max(heals or faults, key=lambda o: o.at) if heals or faults else None
    completes = {int(op.value["campaign"]): op for op in history.of("complete", "ok")}
    offences: list[Offence] = []
    times: dict[int, float] = {}
    for launch in history.of("launch", "ok"):
        campaign = int(launch.value["campaign"])
        done = completes.get(campaign)
        if done is None:
            ref = launch if last is None or launch.at > last.at else last
            offences.append(Offence(f"campaign {campaign} never completed",
                                    (launch.index, ref.index)))
            continue
        before = [h for h in heals if launch.at < h.at <= done.at]
        start = before[-1] if before else launch
        took = done.at - start.at
        times[campaign] = took
        if took > bound_s:
            offences.append(Offence(
                f"campaign {campaign} completed {took:.1f} s after the "
                f"{'heal' if start is not launch else 'launch'} (bound {bound_s:g} s)",
                (start.index, done.index)))
    figures = {"completion_s": times, "bound_s": bound_s}
    return judge(NAME, offences, [], figures,
                 f"{len(times)} campaign(s) completed within {bound_s:g} s of the heal")
