"""The batch size of a launch that names none (``replication.store_codec.auto_batch_size``)."""

from __future__ import annotations

import pytest

from nodes.api.campaigns import launch_fields
from replication.store_codec import auto_batch_size

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("recipients", "size"), [
    (1, 100), (10_000, 100), (200_000, 100), (399_999, 100), (400_000, 200),
    (1_000_000, 500), (5_000_000, 500), (9_999_999, 500),
])
def test_batches_of_100_then_about_2000_batches_of_at_most_500(recipients: int,
                                                                size: int) -> None:
    assert auto_batch_size(recipients) == size


def test_the_api_leaves_the_size_to_the_store_when_the_launch_names_none() -> None:
    """The API, the CLI and a drill's test campaign read one body (``launch_fields``): no
    ``batch_size`` (or null) is passed on as None, for the store to size by its rule."""
    assert launch_fields({"scenario": "s", "population": 1_000_000}).batch_size is None
    assert launch_fields({"scenario": "s", "population": 9, "batch_size": None}).batch_size \
        is None
    assert launch_fields({"scenario": "s", "group": "g", "batch_size": 250}).batch_size == 250
