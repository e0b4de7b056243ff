from datetime import timedelta

import pytest

from apps.payments.due import query_delay


@pytest.mark.parametrize(
    "attempts, seconds",
    [(0, 5), (1, 15), (2, 30), (3, 60), (4, 120), (5, 300), (6, 600), (50, 600)],
    ids=lambda v: str(v),
)
def test_the_query_backoff_schedule(attempts, seconds):
    assert query_delay(attempts) == timedelta(seconds=seconds)
