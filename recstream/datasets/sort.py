"""External merge sort of loaded rows by timestamp: constant memory however big the file.

A row (its events) is one line of bytes `<ts, 20 digits>\t<events as a JSON list>`, so plain byte order
is time order, rows with equal times come out in a fixed order, and exact duplicates end up adjacent,
where dropping them is free. Each event in the line is exactly `recstream.records.encode(event)`, so a
publisher can send it as it is (`encoded_events`) instead of validating it again (`rows_of`). A file already in time order is not sorted at all
(`ordered_lines`): the same lines come out as the rows are read.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from pydantic import TypeAdapter

from recstream.datasets.base import DatasetError, LoadReport, Row
from recstream.records import Interaction

DEFAULT_CHUNK_ROWS = 100_000
"""Rows sorted in memory at a time (about 200 bytes each as a line)."""
FAN_IN = 64
"""Most runs merged at once: bounds the open files however many runs there are."""

_ROW = TypeAdapter(list[Interaction])
_ROW_TO_JSON = _ROW.serializer.to_json  # what `_ROW.dump_json` calls, without its per-call overhead
_EVENTS_AT = 21  # after the 20-digit time and the tab
_USER_ID = b'"user_id":"'

Encoded = tuple[int, bytes, bytes]
"""An event as the sort holds it: (ts, user_id, the event's JSON as `recstream.records.encode` gives)."""


def _line(row: Row) -> bytes:
    # One call for the whole row; the same bytes as '[' + ','.join(encode(e) for e in row) + ']'.
    return b"%020d\t%b\n" % (row[0].ts, _ROW_TO_JSON(row, exclude_none=True))


def _spill(lines: Iterable[bytes], directory: str) -> IO[bytes]:
    run = tempfile.TemporaryFile("w+b", dir=directory)
    run.writelines(lines)
    run.seek(0)
    return run


def sorted_lines(
    rows: Iterable[Row],
    report: LoadReport,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    tmp_dir: str | Path | None = None,
) -> Iterator[bytes]:
    """The lines of `rows` in timestamp order without exact duplicates (counted in `report`)."""
    with tempfile.TemporaryDirectory(prefix="recstream-sort-", dir=tmp_dir) as directory:
        runs: list[IO[bytes]] = []
        chunk: list[bytes] = []
        for row in rows:
            chunk.append(_line(row))
            if len(chunk) >= chunk_rows:
                chunk.sort()
                runs.append(_spill(chunk, directory))
                chunk = []
        chunk.sort()
        if not runs:  # it fitted in memory: no disk at all
            merged: Iterable[bytes] = chunk
        else:
            if chunk:
                runs.append(_spill(chunk, directory))
            while len(runs) > FAN_IN:  # merge in rounds so that at most FAN_IN files are open
                group, runs = runs[:FAN_IN], runs[FAN_IN:]
                runs.append(_spill(heapq.merge(*group), directory))
                for run in group:
                    run.close()
            merged = heapq.merge(*runs)
        try:
            yield from _distinct(merged, report)
        finally:
            for run in runs:
                run.close()


def ordered_lines(rows: Iterable[Row], report: LoadReport) -> Iterator[bytes]:
    """`sorted_lines` for rows already in time order (`datasets.in_time_order` says so): the same lines
    in the same order, streamed as the rows come, holding only the rows of one timestamp (sorted, as
    the full sort would order them, with their repeats dropped)."""
    group: list[bytes] = []
    ts = None
    for row in rows:
        if row[0].ts != ts:
            if ts is not None and row[0].ts < ts:  # the scan before the load said otherwise: a bug
                raise DatasetError(f"{report.path}: rows went back in time after {ts} (to {row[0].ts})")
            group.sort()
            yield from _distinct(group, report)
            group, ts = [], row[0].ts
        group.append(_line(row))
    group.sort()
    yield from _distinct(group, report)


def _distinct(lines: Iterable[bytes], report: LoadReport) -> Iterator[bytes]:
    """Sorted `lines` without their adjacent repeats (counted in `report`)."""
    previous = None
    for line in lines:
        if line == previous:
            report.duplicates += 1
            report.events -= line.count(b'"type":')
            continue
        previous = line
        yield line


def rows_of(lines: Iterable[bytes]) -> Iterator[Row]:
    """The rows of sorted lines."""
    for line in lines:
        yield _ROW.validate_json(line[_EVENTS_AT:])


def encoded_events(line: bytes) -> list[Encoded]:
    """The events of one sorted line, as they are, without parsing them again.

    Splitting on '},{' is safe: an event is a flat JSON object whose strings are its type and ids,
    which can hold neither braces nor quotes (`records.ID_PATTERN`).
    """
    ts = int(line[:20])
    parts = line[_EVENTS_AT + 1 : -2].split(b"},{")  # inside the list's brackets (and before the newline)
    last = len(parts) - 1
    events = []
    for i, part in enumerate(parts):  # most rows: a view alone, one part as it is
        value = part if last == 0 else (b"" if i == 0 else b"{") + part + (b"" if i == last else b"}")
        start = value.index(_USER_ID) + len(_USER_ID)
        events.append((ts, value[start : value.index(b'"', start)], value))
    return events
