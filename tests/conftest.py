"""Shared fixtures: settings, and the real local services for integration tests."""

from __future__ import annotations

import pathlib

import pytest

from recstream.settings import Settings, get_settings

INTEGRATION_DIR = pathlib.Path(__file__).parent / "integration"
# The real KuaiRand sample lives in shared/ beside the repository (CI lays it there too).
KUAIRAND_SAMPLE = (
    next(
        (
            p
            for p in (pathlib.Path(__file__).resolve().parents[2] / "shared", pathlib.Path("/work/shared"))
            if (p / "data" / "kuairand" / "log_random_sample.csv").exists()
        ),
        pathlib.Path(__file__).resolve().parents[2] / "shared",
    )
    / "data"
    / "kuairand"
    / "log_random_sample.csv"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in pathlib.Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def services(settings: Settings) -> Settings:
    """Real Kafka, Redis and MongoDB, started by the project's own manager (a no-op when already up)."""
    from recstream.devtools import services as svc

    svc.up(settings, echo=lambda _line: None)
    return settings


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    from tests import reliability

    reliability.record(report.nodeid, report.outcome, report.duration)


def pytest_sessionfinish(session: pytest.Session) -> None:
    from recstream.devtools.devcluster import delete_isolated_topics
    from tests import reliability

    reliability.write_page()
    delete_isolated_topics()  # every isolated cluster's topics: a broker keeping each run's runs out of files
