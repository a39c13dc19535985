"""The KuaiRand loader on the real sample: every count checked against the file read with `csv`."""

from __future__ import annotations

import csv

import pytest

from recstream.datasets import LoadReport, iter_events, iter_events_sorted
from tests.conftest import KUAIRAND_SAMPLE

SAMPLE = KUAIRAND_SAMPLE
FLAGS = {
    "is_like": "like",
    "is_follow": "follow",
    "is_comment": "comment",
    "is_forward": "share",
    "is_hate": "skip",
}

pytestmark = pytest.mark.skipif(not SAMPLE.is_file(), reason="the KuaiRand sample is not on this machine")


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with SAMPLE.open(newline="") as f:
        return list(csv.DictReader(f))


def test_counts_match_the_file(rows: list[dict[str, str]]) -> None:
    report = LoadReport()
    events = list(iter_events("kuairand", SAMPLE, report))
    views = [e for e in events if e.type == "view"]
    flagged = sum(int(r[name]) for r in rows for name in FLAGS)
    assert len(rows) == 226  # the README's number
    assert report.rows == len(rows) and report.bad_rows == 0 and report.duplicates == 0
    assert len(views) == len(rows) and len(events) == len(rows) + flagged == report.events
    for name, event_type in FLAGS.items():
        assert sum(e.type == event_type for e in events) == sum(int(r[name]) for r in rows)
    # Zero durations (6 rows, per the README) become unknown, never a zero to divide by.
    assert sum(e.duration_ms is None for e in views) == sum(r["duration_ms"] == "0" for r in rows) == 6
    # Replays: watch time beyond the duration is kept as it is.
    replays = sum(int(r["duration_ms"]) > 0 and int(r["play_time_ms"]) > int(r["duration_ms"]) for r in rows)
    assert replays > 0
    assert sum(e.duration_ms is not None and e.watch_time_ms > e.duration_ms for e in views) == replays
    # Row for row, in file order.
    assert [(e.user_id, e.video_id, e.ts, e.watch_time_ms) for e in views] == [
        (r["user_id"], r["video_id"], int(r["time_ms"]), int(r["play_time_ms"])) for r in rows
    ]
    latest, behind = 0, 0
    for r in rows:
        behind += int(r["time_ms"]) < latest
        latest = max(latest, int(r["time_ms"]))
    assert report.out_of_order == behind > 0  # the sample is grouped by user, not in time order


def test_sorted_is_the_same_events_in_time_order(rows: list[dict[str, str]]) -> None:
    in_file = list(iter_events("kuairand", SAMPLE))
    in_time = list(iter_events_sorted("kuairand", SAMPLE, chunk_rows=50))
    assert [e.ts for e in in_time] == sorted(int(r["time_ms"]) for r in rows for _ in range(1 + sum(
        int(r[name]) for name in FLAGS)))  # fmt: skip
    assert sorted(e.model_dump_json() for e in in_time) == sorted(e.model_dump_json() for e in in_file)
