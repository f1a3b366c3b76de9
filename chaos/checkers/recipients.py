"""Every recipient of each launched campaign ends with one final outcome.

Input: ``launch`` ok ops (campaign, recipients), ``outcome`` ops with ``final`` true (as the
observer saw them), and each campaign's last ``final`` op (the observer's read after the run).
Invalid: a campaign still has pending recipients, fewer final outcomes than recipients, or a
recipient's final outcome was replaced by another (only an acknowledgement may upgrade one).
Unknown: a launched campaign has no ``final`` read.
"""

from __future__ import annotations

from chaos.checkers.verdict import Offence, Verdict, judge
from chaos.history import History, Op

NAME = "recipients"


def check(history: History) -> Verdict:
    offences: list[Offence] = []
    unknowns: list[Offence] = []
    launches = {int(op.value["campaign"]): op for op in history.of("launch", "ok")}
    finals: dict[int, Op] = {}
    for op in history.of("final", "ok"):
        finals[int(op.value["campaign"])] = op  # the last read wins
    for campaign, launch in sorted(launches.items()):
        final = finals.get(campaign)
        if final is None:
            unknowns.append(Offence(f"campaign {campaign}: no final read", (launch.index,)))
            continue
        expected = int(launch.value["recipients"])
        got = len(final.value["finals"])
        pending = int(final.value["pending"])
        if pending or got != expected:
            offences.append(Offence(
                f"campaign {campaign}: {got} of {expected} recipients have a final outcome, "
                f"{pending} pending", (launch.index, final.index)))
    first: dict[tuple[int, int], Op] = {}
    for op in history.of("outcome", "ok"):
        if not op.value.get("final"):
            continue
        key = (int(op.value["campaign"]), int(op.value["recipient"]))
        seen = first.setdefault(key, op)
        if seen.value["reference"] != op.value["reference"] \
                and op.value["state"] != "acknowledged":
            offences.append(Offence(
                f"recipient {key[1]} of campaign {key[0]}: final outcome "
                f"{seen.value['reference']} replaced by {op.value['reference']}",
                (seen.index, op.index)))
    figures = {"campaigns": len(launches),
               "recipients": sum(int(op.value["recipients"]) for op in launches.values())}
    return judge(NAME, offences, unknowns, figures,
                 f"{figures['recipients']} recipients of {len(launches)} campaign(s), "
                 "one final outcome each")
