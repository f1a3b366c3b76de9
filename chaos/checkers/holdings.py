"""Who held which batch at a given instant, from the claim log's ``claim`` ops."""

from __future__ import annotations

from dataclasses import dataclass

from chaos.history import History, Op

RELEASING = ("finish", "release", "move")


@dataclass(frozen=True)
class Holder:
    node: str
    epoch: int
    lease_until: float | None  # the latest deadline granted (claim or renew) before the instant
    op: Op


def held_at(history: History, at: float) -> dict[int, Holder]:
    """batch -> its holder at ``at``: the latest claim before ``at`` not ended by a finish,
    release or move before ``at`` (an expired lease still counts as held: nobody took it)."""
    holders: dict[int, Holder] = {}
    for op in sorted(history.of("claim", "ok"), key=lambda o: o.at):
        if op.at > at:
            break
        v = op.value
        batch, kind = int(v["batch"]), v["kind"]
        lease = v.get("lease_until")
        if kind == "claim":
            holders[batch] = Holder(str(v["node"]), int(v["epoch"]),
                                    float(lease) if lease is not None else None, op)
        elif kind == "renew" and batch in holders and holders[batch].epoch == int(v["epoch"]):
            h = holders[batch]
            holders[batch] = Holder(h.node, h.epoch,
                                    float(lease) if lease is not None else h.lease_until, op)
        elif kind in RELEASING and batch in holders \
                and holders[batch].epoch == int(v["epoch"]):
            del holders[batch]
    return holders
