"""Progress: after the heal, each campaign completes within ``bound_s``.

Input: ``launch`` ok ops, ``complete`` ops, and the last ``heal`` ok op (or, without a heal,
the last fault ``invoke``; without either, the launch itself). A campaign with no ``complete``
op, or one completed later than the bound, is named.
"""

from __future__ import annotations

from chaos.checkers.verdict import Offence, Verdict, judge
from chaos.history import History, Op

NAME = "progress"


def check(history: History, bound_s: float) -> Verdict:
    heals = history.of("heal", "ok")
    faults = history.of("fault", "invoke")
    ref: Op | None = max(heals or faults, key=lambda o: o.at) if heals or faults else None
    completes = {int(op.value["campaign"]): op for op in history.of("complete", "ok")}
    offences: list[Offence] = []
    times: dict[int, float] = {}
    for launch in history.of("launch", "ok"):
        campaign = int(launch.value["campaign"])
        start = launch if ref is None or launch.at > ref.at else ref
        done = completes.get(campaign)
        if done is None:
            offences.append(Offence(f"campaign {campaign} never completed",
                                    (launch.index, start.index)))
            continue
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
