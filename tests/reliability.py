"""docs/reliability.md, written from this run's results: every fault and bad input the tests inflict,
what the test requires, and whether it held. Written only by a run that ran every one of them
(`make test`), so the page never mixes runs; a failed row says so, and the page is then a record of a
failure, not a claim."""

from __future__ import annotations

import datetime as dt
import pathlib
import platform
import subprocess

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
E = "tests/integration/test_exactness.py::"
S = "tests/integration/test_streaming.py::test_one_worker["

# node id -> (what is done to the system, what the test requires of it)
ROWS: dict[str, tuple[str, str]] = {
    E + "test_kill9_mid_stream_and_during_recovery[recovering]": (
        "worker killed (`kill -9`) mid-stream, its successor killed again while recovering (50,000 events)",
        "every history, counter, window, trending rank, co-visitation weight, Redis key and MongoDB "
        "document equals the reference computed from the log",
    ),
    E + "test_kill9_mid_stream_and_during_recovery[processing]": (
        "worker killed mid-stream, its successor killed again once processing (50,000 events)",
        "as above",
    ),
    E + "test_two_workers_one_killed_the_other_takes_over": (
        "two workers, one killed mid-stream; the other takes its partitions over",
        "as above",
    ),
    "tests/integration/test_scaleout.py::test_scale_1_3_1_while_events_flow": (
        "scaled 1 -> 3 -> 1 workers on a 12-partition topic while 1,000 events/s flow (two join at once, "
        "then two leave with SIGTERM; one standby replica per table)",
        "the three split the partitions 4/4/4; every partition processed again within 30 s of each change; "
        "then everything equals the reference",
    ),
    E + "test_sink_outage_mid_stream[redis]": (
        "Redis stopped for ~4 s mid-stream (a private instance)",
        "writes retried (counted in /metrics), /recommendations answers `degraded`, /health 503; then "
        "everything equals the reference",
    ),
    E + "test_sink_outage_mid_stream[mongo]": (
        "MongoDB stopped for ~4 s mid-stream (a private instance)",
        "tables and Redis keep advancing while it is down; then everything equals the reference",
    ),
    E + "test_redis_flushed_is_rebuilt_from_the_tables": (
        "Redis flushed (FLUSHDB) mid-stream, nothing re-published",
        "histories, seen filters, stats, trending, neighbour lists and the catalog equal the reference "
        "again (the dashboard's per-second counters restart)",
    ),
    "tests/integration/test_kafka_restart.py::test_broker_restarted_mid_stream": (
        "Kafka broker restarted mid-stream (a private broker) while clients POST to the web role",
        "worker and web role reconnect by themselves; every event that got a 202 is in the log exactly "
        "once and the state equals the reference",
    ),
    "tests/integration/test_upgrade.py::test_this_version_rebuilds_from_an_older_log": (
        "a log written by an older version, with its old Redis keys and internal topic",
        "`recstream rebuild` gives the state this version computes from the log",
    ),
    S + "bad_bodies_are_refused_and_counted]": (
        "non-UTF-8 body, 5,000-deep nested JSON, a body over 8 MiB, 10,001 events, 1,001 videos, a `ts` a "
        "day ahead, ids with `$` / `.` / 129 characters, an unknown field, a 10^12 ms watch time "
        "(worker and web role)",
        "400 / 413 naming the limit / 422 naming the field; each counted by reason; nothing produced",
    ),
    S + "poison_on_every_topic_is_dead_lettered]": (
        "garbage written straight to every topic an agent reads; a like dated a day ahead straight to the log",
        "each dead-lettered with its reason, every agent goes on; the future like counts no more than one "
        "made now plus the allowed skew",
    ),
    S + "writes_need_the_key_and_are_rate_limited]": (
        "writes without a key, with a wrong key, with the read key, as text/plain; one client over its rate",
        "401 (WWW-Authenticate) / 403 / 415 / 429 with Retry-After; public reads open; keys never logged",
    ),
    S + "deletions_take_videos_down_and_erase_users]": (
        "DELETE /videos/{id} of a trending video, then more events for it; DELETE /users/{id}",
        "never served again on any process, tombstoned, MongoDB document gone; the user's history gone "
        "from Redis and MongoDB, nobody else's",
    ),
    S + "mongo_indexes_are_ensured_at_start]": (
        "a worker started on an empty MongoDB database",
        "the indexes the queries need exist",
    ),
    "tests/integration/test_openapi.py::": (  # every test of the file: the fuzzing of each operation
        "schemathesis: >= 100 generated requests per operation of /openapi.json",
        "no 5xx but /health's documented 503; every response matches the document",
    ),
}

results: dict[str, tuple[str, float]] = {}


def _row(nodeid: str) -> str | None:
    """The row a test belongs to: its own node id, or a row of its whole file (a key ending in ::)."""
    if nodeid in ROWS:
        return nodeid
    whole_file = nodeid.split("::", 1)[0] + "::"
    return whole_file if whole_file in ROWS else None


def record(nodeid: str, outcome: str, duration: float) -> None:
    """One phase (setup, call, teardown) of a test: the worst outcome and the total time count."""
    row = _row(nodeid)
    if row is not None:
        before, took = results.get(row, ("passed", 0.0))
        worst = before if before != "passed" else outcome
        results[row] = (worst, took + duration)


def write_page() -> bool:
    """Write the page when every row ran in this session; returns whether it did."""
    if set(results) != set(ROWS):
        return False
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=PAGE.parent,
                check=False,
            ).stdout.strip()
            or "unknown"
        )
    except OSError:
        commit = "unknown"
    lines = [
        "# Reliability: faults and bad input, as the last full test run found them",
        "",
        "Written by `make test` from the results of the tests named in each row (`tests/reliability.py`);",
        'a row says what the test does to the system and what it requires. "Lost" is "nothing" when the test',
        "passed: each one compares everything accepted with what ends up in the state.",
        "",
        f"Run: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit `{commit}`, Python {platform.python_version()}.",
        "",
        "| fault or bad input | required | result | lost | test (s) |",
        "|---|---|---|---|---|",
    ]
    for nodeid, (fault, required) in ROWS.items():
        outcome, took = results[nodeid]
        lost = "nothing" if outcome == "passed" else "**see the test's failure**"
        name = nodeid.split("::", 1)[1] or nodeid.split("::", 1)[0].rsplit("/", 1)[-1] + " (every test)"
        lines.append(f"| {fault} | {required} | {outcome} | {lost} | `{name}` ({took:.0f}) |")
    PAGE.write_text("\n".join(lines) + "\n")
    return True
