"""What the lab tests share: where the repository is, and the handle on the session's lab."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cluster.lab.lab import Lab
from cluster.lab.layout import Layout
from cluster.topology import Topology

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventories" / "lab"


@dataclass
class Leftovers:
    stray_pid: int
    stray_start: int | None
    junk_file: Path
    link: str


@dataclass
class LabHandle:
    topo: Topology
    lab: Lab
    layout: Layout
    leftovers: Leftovers | None = None  # what the session's first `up` had to clear
