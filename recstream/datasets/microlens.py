"""MicroLens (`*_pairs.csv`, `*_pairs.tsv`, `*_titles.csv`): comments on videos, no watch time.

Pair -> a view (watch time unknown: IMPLICIT_WATCH_MS, no duration) plus a comment at the same ts: the
interactions are comments, and commenting implies watching. `*_pairs.csv` is `user,item,timestamp`
(epoch ms; `userID,videoID` spellings and a missing header are accepted). `*_pairs.tsv` is one line per
user, `user<TAB>item item ...` in time order without times: the k-th item of every user gets
start_ms + k * step_ms, so each user's order is kept and users interleave when replayed in time order.
`*_titles.csv` (`item,title`) -> Video records with the title as caption (creator unknown,
created_at = load time: the replay sets it to the start of the log).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from recstream.datasets.base import (
    IMPLICIT_WATCH_MS,
    BadRow,
    Columns,
    LoadReport,
    Row,
    csv_rows,
    csv_times,
    first_line,
    identifier,
    make_video,
    millis,
    open_text,
    row_events,
    unknown_creator,
)
from recstream.records import Video

# Synthetic clock of the .tsv form: 2023-01-01T00:00Z, one minute per position.
TSV_START_MS = 1_672_531_200_000
TSV_STEP_MS = 60_000
MAX_CAPTION = 2000


def _pair(user: str, item: str, ts: int | None) -> Row:
    return row_events(
        identifier(user, "user"), identifier(item, "item"), ts, IMPLICIT_WATCH_MS, None, ["comment"]
    )


def _csv_columns(path: Path) -> tuple[bool, int, int, int]:
    """(has a header, user, item and timestamp positions) of the csv form."""
    head = first_line(path).split(",")
    if head[0].strip().isdigit():
        return False, 0, 1, 2
    cols = Columns(head, "microlens")
    return (
        True,
        cols.find("user", "userid", "user_id"),
        cols.find("item", "videoid", "item_id", "video_id"),
        cols.find("timestamp", "time", "ts"),
    )  # type: ignore[return-value]


def _csv_pairs(path: Path, report: LoadReport) -> Iterator[tuple[int, Row]]:
    has_header, u, i, t = _csv_columns(path)
    need = max(u, i, t) + 1  # type: ignore[type-var]
    for line, fields in csv_rows(path, report, skip_header=has_header):
        try:
            if len(fields) < need:
                raise BadRow(f"expected {need} fields, got {len(fields)}")
            yield line, _pair(fields[u].strip(), fields[i].strip(), millis(fields[t].strip(), "timestamp", 1))  # type: ignore[index]
        except BadRow as exc:
            report.bad(line, str(exc))


def _tsv_pairs(path: Path, report: LoadReport, start_ms: int, step_ms: int) -> Iterator[tuple[int, Row]]:
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            text = line.strip("\r\n")
            if not text.strip():
                continue
            user, tab, items = text.partition("\t")
            if not tab or not user.strip() or not items.split():
                report.rows += 1
                report.bad(line_no, "expected user<TAB>item item ...")
                continue
            # One row per (user, item) so duplicates and bad items are counted like the csv form's.
            for k, item in enumerate(items.split()):
                report.rows += 1
                try:
                    yield line_no, _pair(user.strip(), item, start_ms + k * step_ms)
                except BadRow as exc:
                    report.bad(line_no, f"item {k + 1}: {exc}")


def rows(
    path: Path, report: LoadReport, start_ms: int = TSV_START_MS, step_ms: int = TSV_STEP_MS
) -> Iterator[tuple[int, Row]]:
    if _is_tsv(path):
        return _tsv_pairs(path, report, start_ms, step_ms)
    return _csv_pairs(path, report)


def _is_tsv(path: Path) -> bool:
    head = first_line(path)
    return "\t" in head and "," not in head.split("\t")[0]


def times(path: Path) -> Iterator[int | float | None]:
    """The csv form's timestamps; the tsv form's clock is made up per user, so it is not read."""
    if _is_tsv(path):
        return iter([None])
    has_header, _, _, t = _csv_columns(path)
    return csv_times(path, t, skip_header=has_header)


def videos(path: Path, report: LoadReport) -> Iterator[Video]:
    """Titles (`item,title`); an unquoted title with commas keeps them (the rest of the line is the title)."""
    head = first_line(path).split(",")
    has_header = head[0].strip().lower() in ("item", "item_id", "video_id", "videoid")
    for line, fields in csv_rows(path, report, skip_header=has_header):
        try:
            if len(fields) < 2:
                raise BadRow(f"expected item,title; got {len(fields)} field(s)")
            item = identifier(fields[0].strip(), "item")
            title = ",".join(fields[1:]).strip()[:MAX_CAPTION]
            yield make_video(video_id=item, creator_id=unknown_creator(item), caption=title)
        except BadRow as exc:
            report.bad(line, str(exc))
