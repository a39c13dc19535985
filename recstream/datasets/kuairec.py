"""KuaiRec matrices (`small_matrix.csv`, `big_matrix.csv`): one play per row, no action flags.

Row -> a view (watch_time_ms = play_duration, duration_ms = video_duration, both ms; 0 = unknown) at
`timestamp` (epoch seconds, fractional). Where the timestamp is missing (the big matrix has such
rows) the `time` column (Beijing time, UTC+8) is used; where play_duration is missing it is rebuilt
from watch_ratio * video_duration. Watch ratios above 1 (replays) are kept. No video metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from recstream.datasets.base import (
    BadRow,
    LoadReport,
    Row,
    cell,
    csv_rows,
    csv_times,
    header_of,
    identifier,
    millis,
    number,
    row_events,
)
from recstream.records import Video

BEIJING = timezone(timedelta(hours=8))


def _time_column(text: str) -> int | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadRow(f"time is not a date-time: {text[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=BEIJING)
    return round(parsed.timestamp() * 1000)


def rows(path: Path, report: LoadReport) -> Iterator[tuple[int, Row]]:
    cols = header_of(path, "kuairec")
    user, video = cols.find("user_id"), cols.find("video_id")
    play, duration = cols.find("play_duration"), cols.find("video_duration")
    ts, time_col = cols.find("timestamp", required=False), cols.find("time", required=False)
    ratio = cols.find("watch_ratio", required=False)
    if ts is None and time_col is None:
        cols.find("timestamp")  # raises, naming the missing column
    for line, fields in csv_rows(path, report):
        try:
            if len(fields) != len(cols.names):
                raise BadRow(f"expected {len(cols.names)} fields, got {len(fields)}")
            when = millis(cell(fields, ts), "timestamp", 1000, required=False)
            if when is None:
                when = _time_column(cell(fields, time_col))
            if when is None:
                raise BadRow("timestamp and time are both missing")
            dur = millis(cell(fields, duration), "video_duration", 1, required=False)
            watch = millis(cell(fields, play), "play_duration", 1, required=False)
            if watch is None:
                r = number(cell(fields, ratio), "watch_ratio", required=False)
                if r is None or not dur:
                    raise BadRow("play_duration is missing (and no watch_ratio with a duration)")
                watch = round(max(r, 0.0) * dur)
            yield (
                line,
                row_events(
                    identifier(cell(fields, user), "user_id"),
                    identifier(cell(fields, video), "video_id"),
                    when,
                    watch,
                    dur,
                ),
            )
        except BadRow as exc:
            report.bad(line, str(exc))


def times(path: Path) -> Iterator[int | float | None]:
    """The `timestamp` column (a row without it is dated from `time`, which this does not read: such a
    file is not known to be in time order)."""
    return csv_times(path, header_of(path, "kuairec").find("timestamp", required=False))


def videos(path: Path, report: LoadReport) -> Iterator[Video]:
    return iter(())
