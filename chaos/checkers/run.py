"""Every checker a scenario names, with the scenario's tolerances: ``check_all(history,
scenario)`` returns one verdict per invariant, in the scenario's order."""

from __future__ import annotations

from chaos.checkers import duplicates, fencing, progress, recipients, rpo, watchdog
from chaos.checkers.verdict import Verdict
from chaos.history import History
from chaos.scenario import Scenario


def check_all(history: History, scenario: Scenario) -> list[Verdict]:
    t = scenario.tolerances
    out = []
    for name in scenario.invariants:
        if name == "recipients":
            out.append(recipients.check(history))
        elif name == "rpo":
            window = t.get("rpo_window_s")
            out.append(rpo.check(history, max_window_s=None if window is None
                                 else float(window),
                                 exposure=bool(t.get("rpo_exposure", False))))
        elif name == "duplicates":
            out.append(duplicates.check(history, tolerance=int(t.get("duplicates_extra", 0))))
        elif name == "fencing":
            out.append(fencing.check(history,
                                     expect_refusals=bool(t.get("expect_refusals", False))))
        elif name == "watchdog":
            out.append(watchdog.check(history,
                                      margin_s=float(t.get("watchdog_margin_s", 0.0))))
        elif name == "progress":
            out.append(progress.check(history, bound_s=float(t["progress_bound_s"])))
        else:  # the loader refuses unknown invariants; a hand-made Scenario may not
            raise ValueError(f"invariants: unknown {name!r}")
    return out
