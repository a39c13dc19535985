"""The streaming core end to end, with one worker and with two workers sharing 8 partitions."""

from __future__ import annotations

import pytest

from . import scenarios


@pytest.mark.parametrize("scenario", scenarios.ALL + scenarios.ONE_WORKER, ids=lambda f: f.__name__)
def test_one_worker(cluster, scenario) -> None:  # noqa: ANN001
    scenario(cluster)


@pytest.mark.parametrize("scenario", scenarios.ALL, ids=lambda f: f.__name__)
def test_two_workers(cluster2, scenario) -> None:  # noqa: ANN001
    scenario(cluster2)
