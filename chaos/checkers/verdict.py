"""What a checker returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chaos.history import Op

Validity = Literal["valid", "invalid", "unknown"]
MAX_NAMED = 50  # offences kept in a verdict; the count says how many there were


@dataclass(frozen=True)
class Offence:
    """One violation (or one reason for ``unknown``) and the operations that show it."""

    reason: str
    ops: tuple[int, ...] = ()  # indices in the history

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "ops": list(self.ops)}


@dataclass(frozen=True)
class Verdict:
    checker: str
    validity: Validity
    summary: str
    offences: tuple[Offence, ...] = ()
    offence_count: int = 0
    figures: Mapping[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.validity == "valid"

    def as_dict(self) -> dict[str, Any]:
        return {"checker": self.checker, "validity": self.validity, "summary": self.summary,
                "offences": [o.as_dict() for o in self.offences],
                "offence_count": self.offence_count, "figures": dict(self.figures)}


def judge(checker: str, offences: Sequence[Offence], unknowns: Sequence[Offence],
          figures: Mapping[str, Any], ok_summary: str) -> Verdict:
    """invalid if any offence, else unknown if any reason to doubt, else valid."""
    if offences:
        return Verdict(checker, "invalid", f"{len(offences)} violation(s): {offences[0].reason}",
                       tuple(offences[:MAX_NAMED]), len(offences), figures)
    if unknowns:
        return Verdict(checker, "unknown", unknowns[0].reason, tuple(unknowns[:MAX_NAMED]),
                       len(unknowns), figures)
    return Verdict(checker, "valid", ok_summary, (), 0, figures)


def ops_of(*ops: Op | None) -> tuple[int, ...]:
    return tuple(op.index for op in ops if op is not None)


def recipient_of(reference: str) -> int | None:
    """The recipient id in a reference ``campaign:recipient:channel:attempt``."""
    parts = reference.split(":")
    return int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None
