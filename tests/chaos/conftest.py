"""What the tests of tests/chaos share: three throwaway namespaces of their own (tdly-*)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from chaos.scratch_net import Triangle, triangle


@pytest.fixture
def net() -> Iterator[Triangle]:
    assert os.geteuid() == 0, "creating network namespaces needs root"
    with triangle(f"tdly-{os.getpid() % 100000}") as t:
        yield t
