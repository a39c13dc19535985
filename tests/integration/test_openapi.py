"""Schemathesis fuzzes every operation of /openapi.json, >= 100 cases each, on a worker and on the web role.

Both run on the `cluster` fixture's own topic prefix, Redis DB and MongoDB database, so the events and
videos the fuzzer posts reach no other test. What must hold for every generated request: no 5xx but the
documented 503 of /health; a documented status, content type and body (`recstream.web.schemas`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from recstream.devtools.devcluster import Cluster, get, post, wait_for
from recstream.settings import get_settings
from recstream.web.openapi import DASHBOARD, EXAMPLE_EVENT, EXAMPLE_VIDEO, openapi_document

CASES = 100
FUZZ = settings(
    max_examples=CASES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
    suppress_health_check=list(HealthCheck),
)
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


def _schema(mode: str) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict({"generation": {"mode": mode, "database": "none"}})
    return schemathesis.openapi.from_dict(openapi_document(get_settings()), config=config)


# Generated here, not fetched: parametrizing needs the operations when pytest collects, before the
# cluster runs; `test_both_roles_serve_the_generated_document` checks the servers serve this very one.
# The worker gets valid and invalid requests (a refusal must be documented and shaped as documented
# too); the web role, with the same handlers, valid ones only: three times as many of its events are
# accepted, so more of its reads find data.
API = _schema("all")
VALID = _schema("positive")
cases: Counter[tuple[str, str]] = Counter()  # (role, operation) -> requests sent
statuses: Counter[tuple[str, str, int]] = Counter()  # (role, operation, status): what the fuzzing reached


@pytest.fixture(scope="module")
def seeded(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster with what the document's examples name: their video and a second one, both watched by
    their user (so that the explicit cases find stats, windows, neighbours and a history)."""
    video = EXAMPLE_EVENT["video_id"]
    videos = (video, f"{video}-2")
    assert (
        post(cluster.url + "/videos", {"videos": [{**EXAMPLE_VIDEO, "video_id": v} for v in videos]})[0]
        == 202
    )
    assert (
        post(cluster.url + "/events", {"events": [{**EXAMPLE_EVENT, "video_id": v} for v in videos]})[0]
        == 202
    )
    assert wait_for(lambda: get(f"{cluster.url}/videos/{video}/similar")[1].get("items"), timeout=30), (
        "the seeded events were not processed"
    )
    yield cluster


def _call(case: schemathesis.Case, base_url: str, role: str) -> None:
    cases[(role, case.operation.label)] += 1
    response = case.call(base_url=base_url, timeout=30)
    statuses[(role, case.operation.label, response.status_code)] += 1
    degraded = response.status_code == 503 and case.operation.path == "/health"  # documented
    case.validate_response(response, checks=CHECKS if degraded else [not_a_server_error, *CHECKS])


def test_both_roles_serve_the_generated_document(seeded: Cluster) -> None:
    for url in seeded.urls:
        assert get(url + "/openapi.json") == (200, openapi_document(seeded.settings)), url


@API.parametrize()
@FUZZ
def test_worker_answers_every_request_as_documented(case: schemathesis.Case, seeded: Cluster) -> None:
    _call(case, seeded.url, "worker")


@VALID.exclude(tag=DASHBOARD).parametrize()
@FUZZ
def test_web_role_answers_every_request_as_documented(case: schemathesis.Case, seeded: Cluster) -> None:
    _call(case, seeded.webs[0].url, "web")


def test_operations_without_input_answer_as_documented_100_times(seeded: Cluster) -> None:
    """Hypothesis stops at the one case an operation without parameters or body has: send it 100 times
    (while the queues the fuzzing above filled drain), so that these too are checked >= 100 times."""
    for path, methods in API.raw_schema["paths"].items():
        for method, op in methods.items():
            if op.get("parameters") or op.get("requestBody"):
                continue
            for role, url in (("worker", seeded.url), ("web", seeded.webs[0].url)):
                if role == "worker" or DASHBOARD not in op["tags"]:
                    for _ in range(CASES):
                        _call(API[path][method.upper()].Case(), url, role)


@pytest.mark.summary
def test_every_operation_was_fuzzed_with_at_least_100_cases() -> None:
    doc = openapi_document(get_settings())
    expected = {
        (role, f"{method.upper()} {path}")
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        for role in ("worker", "web")
        if role == "worker" or DASHBOARD not in op["tags"]
    }
    print("\ncases per operation:", *(f"{k}: {v}" for k, v in sorted(cases.items())), sep="\n  ")
    print("statuses:", *(f"{k}: {v}" for k, v in sorted(statuses.items())), sep="\n  ")
    short = {op: cases[op] for op in sorted(expected) if cases[op] < CASES}
    assert not short, f"fewer than {CASES} cases: {short}"
