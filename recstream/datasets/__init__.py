"""Loaders: public datasets -> the canonical records (`Interaction`, `Video`), streamed in constant memory.

    for event in iter_events("movielens", "ml-100k/u.data"): ...
    for event in iter_events_sorted("kuairand", "log_random.csv", report=report): ...   # time order
    for ts, user_id, value in iter_encoded_sorted("kuairand", "log_random.csv"): ...  # as Kafka gets them

Each format maps one input row to a view plus one event per action flag (like, share, comment, follow;
hate -> skip) at the row's time; see each module's docstring for its mapping. Bad rows are skipped and
counted with their line numbers in a `LoadReport`; exact duplicate rows are dropped (within a window of
recent rows by `iter_events`, all of them by `iter_events_sorted`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recstream.datasets import jsonl, kuairand, kuairec, microlens, movielens, tsinghua
from recstream.datasets.base import IMPLICIT_WATCH_MS, BadRow, DatasetError, LoadReport, Row
from recstream.datasets.sort import (
    DEFAULT_CHUNK_ROWS,
    Encoded,
    encoded_events,
    ordered_lines,
    rows_of,
    sorted_lines,
)
from recstream.records import Interaction, Video

__all__ = [
    "FORMATS",
    "Encoded",
    "IMPLICIT_WATCH_MS",
    "BadRow",
    "DatasetError",
    "Format",
    "LoadReport",
    "iter_encoded_sorted",
    "iter_events",
    "iter_events_sorted",
    "in_time_order",
    "iter_videos",
]

# Rows remembered to drop exact repeats while streaming: bounded, so memory stays constant.
DEDUPE_WINDOW = 10_000
SORTING_EVERY = 10_000
"""Rows between the progress reports of a sort (`iter_encoded_sorted(sorting=...)`)."""


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    rows: Callable[..., Iterator[tuple[int, Row]]]
    videos: Callable[[Path, LoadReport], Iterator[Video]]
    times: Callable[[Path], Iterator[int | float | None]] | None = None
    """Each row's raw time in file order, cheaply (None where unknown): lets `in_time_order` spare an
    ordered file the sort."""


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "movielens",
            "MovieLens u.data / ratings.dat / ratings.csv / RecBole .inter",
            movielens.rows,
            movielens.videos,
        ),
        Format(
            "microlens",
            "MicroLens *_pairs.csv / *_pairs.tsv (videos: *_titles.csv)",
            microlens.rows,
            microlens.videos,
            microlens.times,
        ),
        Format("jsonl", "recstream's own log: JSON lines of Interaction records", jsonl.rows, jsonl.videos),
        Format("kuairand", "KuaiRand log_*.csv", kuairand.rows, kuairand.videos, kuairand.times),
        Format(
            "kuairec",
            "KuaiRec small_matrix.csv / big_matrix.csv",
            kuairec.rows,
            kuairec.videos,
            kuairec.times,
        ),
        Format(
            "tsinghua",
            "Tsinghua ShortVideo interaction.csv (videos: the same file or a video table)",
            tsinghua.rows,
            tsinghua.videos,
            tsinghua.times,
        ),
    )
}


def _format(fmt: str) -> Format:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise DatasetError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}") from None


def iter_rows(fmt: str, path: str | Path, report: LoadReport | None = None, **options: Any) -> Iterator[Row]:
    """Every row's events in file order, duplicates within the last DEDUPE_WINDOW rows dropped."""
    report = report if report is not None else LoadReport()
    path = Path(path)
    report.fmt, report.path = fmt, str(path)
    loader = _format(fmt)
    if not path.is_file():
        raise DatasetError(f"{fmt}: no such file {path}")
    # 64-bit hashes, not the rows: ~100 bytes a row remembered (a false match is ~1e-11 per row).
    recent: OrderedDict[int, None] = OrderedDict()
    latest = 0
    for _line, row in loader.rows(path, report, **options):
        key = hash(tuple(row))
        if key in recent:
            report.duplicates += 1
            continue
        recent[key] = None
        if len(recent) > DEDUPE_WINDOW:
            recent.popitem(last=False)
        ts = row[0].ts
        if ts < latest:
            report.out_of_order += 1
        latest = max(latest, ts)
        report.events += len(row)
        yield row


def iter_events(
    fmt: str, path: str | Path, report: LoadReport | None = None, **options: Any
) -> Iterator[Interaction]:
    """Interactions in file order (not necessarily time order: see `iter_events_sorted`)."""
    for row in iter_rows(fmt, path, report, **options):
        yield from row


def iter_events_sorted(
    fmt: str,
    path: str | Path,
    report: LoadReport | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    tmp_dir: str | Path | None = None,
    **options: Any,
) -> Iterator[Interaction]:
    """Interactions in timestamp order, every exact duplicate row dropped, in constant memory.

    A file that fits in `chunk_rows` rows is sorted in memory; a bigger one is cut into sorted runs in
    temporary files and merged (an external merge sort). Rows with equal timestamps come out in a fixed
    order (by user, then video), and a row's own events (view, then its actions) stay together. A file
    already in time order (`in_time_order`) is not sorted: the same events stream as it is read.
    """
    for row in rows_of(_time_ordered_lines(fmt, path, report, chunk_rows, tmp_dir, None, options)):
        yield from row


def iter_encoded_sorted(
    fmt: str,
    path: str | Path,
    report: LoadReport | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    tmp_dir: str | Path | None = None,
    sorting: Callable[[int], None] | None = None,
    **options: Any,
) -> Iterator[Encoded]:
    """`iter_events_sorted`'s events, in the same order and with the same report, as (ts, user_id,
    `encode(event)`): what a publisher needs, without parsing and validating every event a second time
    (they were validated when loaded). `sorting(n)` is told of every SORTING_EVERY rows the sort reads
    before its first event comes out (not called when the file streams)."""
    for line in _time_ordered_lines(fmt, path, report, chunk_rows, tmp_dir, sorting, options):
        yield from encoded_events(line)


def _time_ordered_lines(
    fmt: str,
    path: str | Path,
    report: LoadReport | None,
    chunk_rows: int,
    tmp_dir: str | Path | None,
    sorting: Callable[[int], None] | None,
    options: dict[str, Any],
) -> Iterator[bytes]:
    """The rows as sorted lines: streamed when the file is already in time order, else sorted (which
    reads the whole file before the first line comes out)."""
    report = report if report is not None else LoadReport()
    rows = iter_rows(fmt, path, report, **options)
    if in_time_order(fmt, path, max_ties=chunk_rows):
        report.already_in_time_order = True
        return ordered_lines(rows, report)
    if sorting is not None:
        rows = _told(rows, sorting)
    return sorted_lines(rows, report, chunk_rows, tmp_dir)


def _told(rows: Iterator[Row], tell: Callable[[int], None]) -> Iterator[Row]:
    """`rows`, telling `tell` of every SORTING_EVERY of them (and of the rest at the end)."""
    count = 0
    for row in rows:
        yield row
        count += 1
        if count == SORTING_EVERY:
            tell(count)
            count = 0
    if count:
        tell(count)


def in_time_order(fmt: str, path: str | Path, max_ties: int = DEFAULT_CHUNK_ROWS) -> bool:
    """Whether the file's rows are known to be in time order, read from their time column alone (~1 µs
    a row, against ~15 µs to load one). False when the format cannot tell, a time is missing, or more
    than `max_ties` rows share one time (the streamed order holds those in memory)."""
    loader = _format(fmt)
    path = Path(path)
    if loader.times is None or not path.is_file():
        return False
    previous: int | float = -math.inf
    ties = 0
    for value in loader.times(path):
        if value is None or value < previous:
            return False
        ties = ties + 1 if value == previous else 0
        if ties >= max_ties:
            return False
        previous = value
    return True


def iter_videos(fmt: str, path: str | Path, report: LoadReport | None = None) -> Iterator[Video]:
    """Video metadata from the format's metadata file; nothing for formats without one."""
    report = report if report is not None else LoadReport()
    path = Path(path)
    report.fmt, report.path = fmt, str(path)
    loader = _format(fmt)
    if not path.is_file():
        raise DatasetError(f"{fmt}: no such file {path}")
    for video in loader.videos(path, report):
        report.videos += 1
        yield video
