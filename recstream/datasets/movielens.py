"""MovieLens ratings: GroupLens `u.data`, `ratings.dat` (`::`), `ratings.csv`, and RecBole's `.inter`.

Every rating is a view at the rating's time (seconds -> epoch ms). There is no watch time, so the
rating sets it: watch_time_ms = rating / 5 * 60 s with no duration, which the scoring reads as an
engagement of rating / 5 (always positive: a rated movie was watched). No metadata is read.
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
    first_line,
    identifier,
    millis,
    number,
    open_text,
    row_events,
)
from recstream.records import Video

MAX_RATING = 5.0


def _layout(path: Path) -> tuple[str | None, tuple[int, int, int | None, int], bool]:
    """(separator, column positions of user/item/rating/timestamp, has header) from the first line."""
    head = first_line(path)
    if "::" in head:  # ml-1m / ml-10m ratings.dat
        return "::", (0, 1, 2, 3), False
    if head.lower().startswith("user"):  # RecBole .inter (tab) or ml-latest ratings.csv (comma)
        sep = "\t" if "\t" in head else ","
        cols = Columns(head.split(sep), "movielens")
        positions = (
            cols.find("user_id", "userid", "user"),
            cols.find("item_id", "movieid", "item", "movie_id"),
            cols.find("rating", required=False),
            cols.find("timestamp", "time"),
        )
        return sep, positions, True  # type: ignore[return-value]
    return None, (0, 1, 2, 3), False  # u.data: whitespace separated, no header


def rows(path: Path, report: LoadReport) -> Iterator[tuple[int, Row]]:
    sep, (u, i, r, t), has_header = _layout(path)
    need = max(p for p in (u, i, r, t) if p is not None) + 1
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if has_header and line_no == 1:
                continue
            text = line.strip()
            if not text:
                continue
            report.rows += 1
            fields = text.split(sep)
            try:
                if len(fields) < need:
                    raise BadRow(f"expected {need} fields, got {len(fields)}")
                rating = MAX_RATING if r is None else number(fields[r].strip(), "rating")
                if rating is None or rating <= 0:
                    raise BadRow(f"rating must be > 0, got {fields[r].strip()!r}")  # type: ignore[index]
                watch = round(min(rating, MAX_RATING) / MAX_RATING * IMPLICIT_WATCH_MS)
                yield (
                    line_no,
                    row_events(
                        identifier(fields[u].strip(), "user"),
                        identifier(fields[i].strip(), "item"),
                        millis(fields[t].strip(), "timestamp", 1000),
                        watch,
                        None,
                    ),
                )
            except BadRow as exc:
                report.bad(line_no, str(exc))


def videos(path: Path, report: LoadReport) -> Iterator[Video]:
    return iter(())
