"""The batch size of a launch that names none (``replication.store_codec.auto_batch_size``)."""

from __future__ import annotations

import pytest

from replication.store_codec import auto_batch_size

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("recipients", "size"), [
    (1, 100), (10_000, 100), (200_000, 100), (399_999, 100), (400_000, 200),
    (1_000_000, 500), (5_000_000, 500), (9_999_999, 500),
])
def test_batches_of_100_then_about_2000_batches_of_at_most_500(recipients: int,
                                                                size: int) -> None:
    assert auto_batch_size(recipients) == size
