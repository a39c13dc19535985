"""Real worker processes for end-to-end tests, each cluster isolated by app id, topic prefix, Redis DB
and MongoDB database so that runs never see each other's state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from recstream.devtools.devcluster import Cluster, get, post, request, wait_for  # noqa: F401 - used by tests
from recstream.settings import Settings


@pytest.hookimpl(trylast=True)  # after any reordering (pytest --reverse): the summary still comes last
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked `summary` checks what the other tests of its module did together (how many cases
    the fuzzing sent): it runs after them in any order the rest is run in."""
    summaries = [i for i in items if i.get_closest_marker("summary")]
    for item in summaries:
        items.remove(item)
        last = max(
            (n for n, other in enumerate(items) if other.module is item.module), default=len(items) - 1
        )
        items.insert(last + 1, item)


_redis_dbs = iter(range(1, 16))  # one Redis DB per cluster in this session


@pytest.fixture(scope="module")
def cluster(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One worker on its own topics, and a web role process serving from the same state."""
    c = Cluster(services, tmp_path_factory.mktemp("cluster"), redis_db=next(_redis_dbs))
    c.start_worker()
    c.wait_settled()
    c.start_web()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def cluster2(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two workers sharing the 8 partitions of their topics, and two web processes sharing one port."""
    c = Cluster(services, tmp_path_factory.mktemp("cluster2"), redis_db=next(_redis_dbs))
    c.start_worker()
    c.start_worker()
    c.wait_settled()
    c.start_web(processes=2)
    yield c
    c.stop()
