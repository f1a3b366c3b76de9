"""Tests of the Ansible side: rendering, syntax, preflight, lint. They run ansible-playbook on
the controller only (no machine), so they are integration tests, not unit ones."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/ansible/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.integration)
