"""Tsinghua ShortVideo (WWW 2025): `interaction.csv` (behaviour, often with the video attributes
inline) and a video table (`pid, duration, author_id, category_id, parent_id, root_id, tag_name, title`).

Row -> a view (watch_time seconds -> ms; duration seconds -> ms from the row, else from the optional
`videos_path` table, 0 = unknown) at `exposed_time` (epoch seconds; p_date + p_hour in Beijing time
when it is missing), plus like (cvm_like, or collect: a bookmark is a like-strength positive), comment,
follow, share (forward) and skip (hate) at the same ts. effective_view is derived from watch time and
ignored. Videos: one per pid (first sighting), creator = author_id, category = root (primary) category.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from recstream.datasets.base import (
    BadRow,
    Columns,
    LoadReport,
    Row,
    cell,
    csv_rows,
    csv_times,
    flag,
    header_of,
    identifier,
    make_video,
    millis,
    row_events,
    unknown_creator,
)
from recstream.records import EventType, Video

BEIJING = timezone(timedelta(hours=8))
FLAGS: dict[str, EventType] = {
    "cvm_like": "like",
    "forward": "share",
    "comment": "comment",
    "follow": "follow",
    "hate": "skip",
}
VIDEO_COLUMNS = ("duration", "author_id", "category_id", "parent_id", "root_id", "tag_name", "title")


def _hour_time(fields: list[str], cols: Columns) -> int | None:
    day, hour = (
        cell(fields, cols.find("p_date", required=False)),
        cell(fields, cols.find("p_hour", required=False)),
    )
    if not day:
        return None
    try:
        start = datetime.strptime(day.split(".")[0], "%Y%m%d").replace(tzinfo=BEIJING)
        return round((start + timedelta(hours=int(float(hour or 0)))).timestamp() * 1000)
    except ValueError:
        raise BadRow(f"p_date/p_hour is not a date: {day!r} {hour!r}") from None


def _durations(videos_path: Path | None) -> dict[str, int]:
    """pid -> duration ms from a video table: O(videos) memory (153k in the full dataset), not O(rows)."""
    if videos_path is None:
        return {}
    out: dict[str, int] = {}
    for video in videos(videos_path, LoadReport()):
        if video.duration_ms:
            out[video.video_id] = video.duration_ms
    return out


def rows(path: Path, report: LoadReport, videos_path: Path | None = None) -> Iterator[tuple[int, Row]]:
    cols = header_of(path, "tsinghua")
    user, pid, watch = cols.find("user_id"), cols.find("pid"), cols.find("watch_time")
    ts, duration = cols.find("exposed_time", required=False), cols.find("duration", required=False)
    flags = [(cols.find(name, required=False), name, event) for name, event in FLAGS.items()]
    collect = cols.find("collect", required=False)
    known = _durations(videos_path)
    for line, fields in csv_rows(path, report):
        try:
            if len(fields) != len(cols.names):
                raise BadRow(f"expected {len(cols.names)} fields, got {len(fields)}")
            video = identifier(cell(fields, pid), "pid")
            actions = [event for i, name, event in flags if i is not None and flag(cell(fields, i), name)]
            if "like" not in actions and collect is not None and flag(cell(fields, collect), "collect"):
                actions.insert(0, "like")
            when = millis(cell(fields, ts), "exposed_time", 1000, required=False)
            dur = millis(cell(fields, duration), "duration", 1000, required=False) or known.get(video)
            yield (
                line,
                row_events(
                    identifier(cell(fields, user), "user_id"),
                    video,
                    when if when is not None else _hour_time(fields, cols),
                    millis(cell(fields, watch), "watch_time", 1000),
                    dur,
                    actions,
                ),
            )
        except BadRow as exc:
            report.bad(line, str(exc))


def times(path: Path) -> Iterator[int | float | None]:
    """The `exposed_time` column (rows dated from p_date + p_hour instead are not read: such a file is
    not known to be in time order)."""
    return csv_times(path, header_of(path, "tsinghua").find("exposed_time", required=False))


def videos(path: Path, report: LoadReport) -> Iterator[Video]:
    """Video records from a video table or the wide interaction file (each pid once)."""
    cols = header_of(path, "tsinghua")
    pid = cols.find("pid")
    at = {name: cols.find(name, required=False) for name in VIDEO_COLUMNS}
    if all(i is None for i in at.values()):
        return  # an interactions-only file carries no metadata
    seen: set[str] = set()
    for line, fields in csv_rows(path, report):
        try:
            video_id = identifier(cell(fields, pid), "pid")
            if video_id in seen:
                continue
            author = cell(fields, at["author_id"])
            category = (
                cell(fields, at["root_id"])
                or cell(fields, at["parent_id"])
                or cell(fields, at["category_id"])
            )
            tags = [t[:64] for t in (cell(fields, at["tag_name"]),) if t]
            tags += [f"category:{c}" for c in (cell(fields, at["category_id"]),) if c]
            yield make_video(
                video_id=video_id,
                creator_id=identifier(author, "author_id") if author else unknown_creator(video_id),
                duration_ms=millis(cell(fields, at["duration"]), "duration", 1000, required=False) or None,
                category=identifier(category, "category")[:64] if category else None,
                hashtags=tags,
                caption=cell(fields, at["title"])[:2000],
            )
            seen.add(video_id)
        except BadRow as exc:
            report.bad(line, str(exc))
