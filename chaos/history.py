"""The history of a chaos run: a typed, append-only list of operations, written as JSON lines.

Jepsen's model: every operation has a *process* (who did it), a *type*, a *function* and a
*value*. A workload client's call is an ``invoke`` followed by its completion (``ok``,
``fail``, or ``info`` when its outcome is unknown: a timeout, a lost connection); what a
collector observed (a carrier's submission, a committed outcome, a claim) is recorded as a
single ``ok`` (or ``info`` for an observation that is itself uncertain, such as a gap).

Times. ``at`` is the wall time (seconds since the epoch) at which the operation happened
according to its source: the database's clock for what the store recorded, the simulator's
for a submission, the recorder's own for a fault. Every source of one run shares one clock
(one machine, or NTP-synchronised hosts), and checkers order operations across sources by
``at``. ``mono`` is ``time.monotonic()`` of the recording process when the operation was added:
it orders what one recorder saw and measures durations without wall-clock steps.

Processes: ``workload:N`` (a workload client), ``node:NAME`` (an alert node, as seen through
the store), ``carrier:SITE`` (a site's carrier simulator), ``observer`` (the store observer),
``nemesis``.

Functions and their values (all keys required unless marked optional):

=============  =============================================================================
``launch``     invoke ``{population, scenario}``; ok ``{campaign, recipients}``
``submit``     ``{site, channel, reference, message_id, resubmission, seq}`` (a carrier)
``outcome``    ``{campaign, recipient, reference, channel, state, carrier_message_id, epoch,
               node, site, batch, recorded_at, final}`` (committed, seen by the observer)
``final``      ``{campaign, recipients, outcomes: {recipient: reference}, pending}``: the
               observer's last read of a campaign, after the run
``read``       ``{db_time}``: a consistent read of the store by the observer ended at db_time
``claim``      ``{batch, epoch, node, site, kind, lease_until, prev_owner, prev_epoch,
               current_epoch (optional), rows (optional)}``; kind is claim, renew, write,
               finish, release or move (the claim log of migration 0006)
``stale_write`` ``{batch, epoch, node, operation, current_epoch, current_owner, rows}``: a
               write the database refused
``move``       ``{nodes, batches, sentence}``: a watchdog.move event (details kept)
``event``      ``{kind, node, site, sentence, details}``: another event of the store
``complete``   ``{campaign, state, completed_at}``: a campaign seen completed
``fault``      invoke/ok/fail ``{name, target, params}`` (the nemesis)
``heal``       invoke/ok/fail ``{name, target}``
``gap``        info ``{source, lost, reason}``: a collector knows it missed operations
=============  =============================================================================
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

OpType = Literal["invoke", "ok", "fail", "info"]
OP_TYPES: tuple[OpType, ...] = get_args(OpType)
FUNCTIONS = frozenset({"launch", "submit", "outcome", "final", "read", "claim", "stale_write",
                       "move", "event", "complete", "fault", "heal", "gap"})


class HistoryError(ValueError):
    """A malformed operation; the message names the line (when read from a file) and field."""


@dataclass(frozen=True)
class Op:
    process: str
    type: OpType
    f: str
    value: Mapping[str, Any]
    at: float
    mono: float
    index: int = -1  # position in its history, set when appended

    def __post_init__(self) -> None:
        if not isinstance(self.process, str) or not self.process:
            raise HistoryError("process: a non-empty string")
        if self.type not in OP_TYPES:
            raise HistoryError(f"type: one of {', '.join(OP_TYPES)}, got {self.type!r}")
        if self.f not in FUNCTIONS:
            raise HistoryError(f"f: one of {', '.join(sorted(FUNCTIONS))}, got {self.f!r}")
        if not isinstance(self.value, Mapping):
            raise HistoryError("value: a mapping")
        for name in ("at", "mono"):
            t = getattr(self, name)
            if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
                raise HistoryError(f"{name}: a finite number of seconds")

    def to_json(self) -> str:
        return json.dumps({"index": self.index, "process": self.process, "type": self.type,
                           "f": self.f, "value": self.value, "at": self.at, "mono": self.mono},
                          sort_keys=True, default=str)

    @classmethod
    def from_json(cls, line: str) -> Op:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise HistoryError("an operation is a JSON object")
        missing = {"process", "type", "f", "value", "at", "mono"} - set(data)
        if missing:
            raise HistoryError(f"{sorted(missing)[0]}: missing")
        return cls(process=data["process"], type=data["type"], f=data["f"],
                   value=data["value"], at=float(data["at"]), mono=float(data["mono"]),
                   index=int(data.get("index", -1)))

    def name(self) -> str:
        """A short way to name this operation in a checker's verdict."""
        return f"#{self.index} {self.process} {self.type} {self.f}"


@dataclass
class History:
    """Operations in the order they were added. Not thread-safe: one event loop appends."""

    ops: list[Op] = field(default_factory=list)

    def add(self, process: str, type_: OpType, f: str, value: Mapping[str, Any],
            at: float | None = None) -> Op:
        now = time.time()
        op = Op(process, type_, f, dict(value), now if at is None else at, time.monotonic(),
                len(self.ops))
        self.ops.append(op)
        return op

    def extend(self, ops: Iterable[Op]) -> None:
        for op in ops:
            self.ops.append(Op(op.process, op.type, op.f, op.value, op.at, op.mono,
                               len(self.ops)))

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def of(self, f: str, type_: OpType | None = None) -> list[Op]:
        return [op for op in self.ops if op.f == f and (type_ is None or op.type == type_)]

    def write(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as out:
            for op in self.ops:
                out.write(op.to_json() + "\n")

    @classmethod
    def read(cls, path: str | Path) -> History:
        h = cls()
        with open(path, encoding="utf-8") as src:
            for n, line in enumerate(src, start=1):
                if not line.strip():
                    continue
                try:
                    op = Op.from_json(line)
                except (HistoryError, ValueError, TypeError) as exc:
                    raise HistoryError(f"{path}: line {n}: {exc}") from None
                h.ops.append(Op(op.process, op.type, op.f, op.value, op.at, op.mono,
                                len(h.ops)))
        return h
