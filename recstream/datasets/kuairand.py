"""KuaiRand logs (`log_*.csv`): one exposure per row with play time, duration and action flags.

Row -> a view (watch_time_ms = play_time_ms, duration_ms = duration_ms, 0 = unknown) at `time_ms`, plus
like (is_like), follow (is_follow), comment (is_comment), share (is_forward) and skip (is_hate) events
at the same ts. A row with play time 0 stays a view of 0 ms: an exposure the user swiped past, which
the scoring counts as a fast skip. The log has no video metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from recstream.datasets.base import (
    BadRow,
    LoadReport,
    Row,
    cell,
    csv_rows,
    csv_times,
    flag,
    header_of,
    identifier,
    millis,
    row_events,
)
from recstream.records import EventType, Video

# KuaiRand flag column -> the event it adds.
FLAGS: dict[str, EventType] = {
    "is_like": "like",
    "is_forward": "share",
    "is_comment": "comment",
    "is_follow": "follow",
    "is_hate": "skip",
}


def rows(path: Path, report: LoadReport) -> Iterator[tuple[int, Row]]:
    cols = header_of(path, "kuairand")
    user, video = cols.find("user_id"), cols.find("video_id")
    ts, play, duration = cols.find("time_ms"), cols.find("play_time_ms"), cols.find("duration_ms")
    flags = [(cols.find(name, required=False), name, event) for name, event in FLAGS.items()]
    for line, fields in csv_rows(path, report):
        try:
            if len(fields) != len(cols.names):
                raise BadRow(f"expected {len(cols.names)} fields, got {len(fields)}")
            actions = [event for i, name, event in flags if i is not None and flag(cell(fields, i), name)]
            yield (
                line,
                row_events(
                    identifier(cell(fields, user), "user_id"),
                    identifier(cell(fields, video), "video_id"),
                    millis(cell(fields, ts), "time_ms", 1),
                    millis(cell(fields, play), "play_time_ms", 1),
                    millis(cell(fields, duration), "duration_ms", 1, required=False),
                    actions,
                ),
            )
        except BadRow as exc:
            report.bad(line, str(exc))


def times(path: Path) -> Iterator[int | float | None]:
    return csv_times(path, header_of(path, "kuairand").find("time_ms"))


def videos(path: Path, report: LoadReport) -> Iterator[Video]:
    return iter(())
