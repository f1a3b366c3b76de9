"""Shared fixtures of the unit tests: the shipped lab inventory, raw and loaded."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.lab.layout import SECRET_NAMES
from cluster.topology import Topology, load_topology

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_INVENTORY = REPO_ROOT / "inventories" / "lab" / "hosts.yml"

_LAB_DATA: dict[str, Any] = yaml.safe_load(LAB_INVENTORY.read_text(encoding="utf-8"))


@pytest.fixture
def lab_inventory_path() -> Path:
    return LAB_INVENTORY


@pytest.fixture
def lab_data() -> dict[str, Any]:
    """A fresh deep copy of the parsed lab inventory, free for a test to mutate."""
    return copy.deepcopy(_LAB_DATA)


@pytest.fixture
def lab_topology() -> Topology:
    return load_topology(LAB_INVENTORY)


@pytest.fixture
def lab_secrets() -> dict[str, str]:
    """Distinctive secret values, easy to spot if they leak where they must not."""
    return {
        name: f"s3cret-{name}-Zq8vTn-0123456789abcdef"
        for name in SECRET_NAMES
    }
