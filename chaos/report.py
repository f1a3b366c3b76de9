"""One chaos run's record (scenario, moment, backend, verdicts, resume time, duplicates), kept as
files under a results directory, and the verdict table that fits 80 columns.

A run's directory, ``<root>/<UTC time>-<scenario>-<moment>-<backend>/``, holds ``history.jsonl``
(the history, one operation a line: ``chaos.history.History.read`` reads it back),
``verdicts.json`` (each checker's verdict with the offending operations' indices in that
history) and ``run.json`` (the record without the verdicts' details).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.checkers.verdict import Verdict
from chaos.history import History
from chaos.resume import Resume
from chaos.scenario import INVARIANTS

SHORT = {"recipients": "rcp", "rpo": "rpo", "duplicates": "dup", "fencing": "fen",
         "watchdog": "wdg", "progress": "prg"}
MARK = {"valid": "ok", "invalid": "BAD", "unknown": "?"}
MOMENT = {"start": "start", "early": "early", "middle": "middle", "end": "end",
          "during-pg-failover": "pg-fo"}
BACKEND = {"etcd": "etcd", "zookeeper": "zk"}
LEGEND = ("ok valid, BAD invalid, ? unknown, . not checked; resume: seconds from the fault to "
          "the first submission / accepted outcome write at a surviving site; dup: duplicate "
          "deliveries (as a carrier without dedup delivers them); pg-fo: during a PostgreSQL "
          "failover")


@dataclass
class RunRecord:
    scenario: str
    moment: str
    backend: str
    seed: int
    verdicts: list[Verdict] = field(default_factory=list)
    resume: Resume | None = None
    campaigns: list[int] = field(default_factory=list)
    error: str | None = None  # the run could not be carried out (a fault failed, no launch...)
    started_at: float = 0.0
    duration_s: float = 0.0
    results: str | None = None  # the run's directory

    @property
    def ok(self) -> bool:
        return self.error is None and all(v.validity != "invalid" for v in self.verdicts)

    @property
    def duplicates(self) -> int | None:
        for v in self.verdicts:
            if v.checker == "duplicates" and "duplicates" in v.figures:
                return int(v.figures["duplicates"])
        return None

    def as_dict(self, details: bool = False) -> dict[str, Any]:
        return {"scenario": self.scenario, "moment": self.moment, "backend": self.backend,
                "seed": self.seed, "ok": self.ok, "error": self.error,
                "campaigns": self.campaigns, "started_at": self.started_at,
                "duration_s": round(self.duration_s, 3),
                "resume": self.resume.as_dict() if self.resume else None,
                "duplicates": self.duplicates, "results": self.results,
                "verdicts": [v.as_dict() if details else
                             {"checker": v.checker, "validity": v.validity,
                              "summary": v.summary} for v in self.verdicts]}


def run_dir(root: Path, record: RunRecord) -> Path:
    stamp = datetime.fromtimestamp(record.started_at, UTC).strftime("%Y%m%dT%H%M%SZ")
    return root / f"{stamp}-{record.scenario}-{record.moment}-{record.backend}"


def save(root: Path, record: RunRecord, history: History) -> Path:
    """Write the run's history, verdicts and record; returns its directory."""
    where = run_dir(root, record)
    where.mkdir(parents=True, exist_ok=True)
    record.results = str(where)
    history.write(where / "history.jsonl")
    (where / "verdicts.json").write_text(
        json.dumps([v.as_dict() for v in record.verdicts], indent=2, default=str) + "\n",
        encoding="utf-8")
    (where / "run.json").write_text(json.dumps(record.as_dict(), indent=2, default=str) + "\n",
                                    encoding="utf-8")
    return where


def _cells(record: RunRecord) -> list[str]:
    by = {v.checker: MARK[v.validity] for v in record.verdicts}
    return [by.get(name, ".") for name in INVARIANTS]


def table(records: Sequence[RunRecord]) -> list[str]:
    """The verdict table, one line per run (at most 79 columns), then the legend."""
    head = (f"{'scenario':<24} {'moment':<6} {'coord':<5} "
            + "".join(f"{SHORT[n]:<4}" for n in INVARIANTS) + f"{'resume s':<11} {'dup':>5}")
    lines = [head]
    for r in records:
        resume = r.resume.short() if r.resume else "-"
        dup = "-" if r.duplicates is None else str(r.duplicates)
        cells = _cells(r) if r.error is None else ["ERR"] + ["."] * (len(INVARIANTS) - 1)
        lines.append(f"{r.scenario[:24]:<24} {MOMENT.get(r.moment, r.moment)[:6]:<6} "
                     f"{BACKEND.get(r.backend, r.backend)[:5]:<5} "
                     + "".join(f"{c:<4}" for c in cells) + f"{resume:<11} {dup:>5}")
    return [*lines, LEGEND]


def problems(records: Sequence[RunRecord]) -> list[str]:
    """A sentence per run that failed to run and per verdict that is not valid."""
    out = []
    for r in records:
        name = f"{r.scenario} {r.moment} on {r.backend}"
        if r.error is not None:
            out.append(f"{name}: not run to the end: {r.error}")
        for v in r.verdicts:
            if v.validity != "valid":
                out.append(f"{name}: {v.checker} {v.validity}: {v.summary}")
        if r.results and (r.error is not None or not all(v.valid for v in r.verdicts)):
            out.append(f"  history and verdicts in {r.results}")
    return out
