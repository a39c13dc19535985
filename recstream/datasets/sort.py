"""External merge sort of loaded rows by timestamp: constant memory however big the file.

A row (its events) is one text line `<ts, 20 digits>\t<events as JSON>`, so plain string order is time
order, rows with equal times come out in a fixed order, and exact duplicates end up adjacent, where
dropping them is free.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from pydantic import TypeAdapter

from recstream.datasets.base import LoadReport, Row
from recstream.records import Interaction

DEFAULT_CHUNK_ROWS = 100_000
"""Rows sorted in memory at a time (about 200 bytes each as a line)."""
FAN_IN = 64
"""Most runs merged at once: bounds the open files however many runs there are."""

_ROW = TypeAdapter(list[Interaction])


def _line(row: Row) -> str:
    return f"{row[0].ts:020d}\t[{','.join(e.model_dump_json(exclude_none=True) for e in row)}]\n"


def _spill(lines: Iterable[str], directory: str) -> IO[str]:
    run = tempfile.TemporaryFile("w+", dir=directory, encoding="utf-8")
    run.writelines(lines)
    run.seek(0)
    return run


def sorted_rows(
    rows: Iterable[Row],
    report: LoadReport,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    tmp_dir: str | Path | None = None,
) -> Iterator[Row]:
    """`rows` in timestamp order without exact duplicates (counted in `report`)."""
    with tempfile.TemporaryDirectory(prefix="recstream-sort-", dir=tmp_dir) as directory:
        runs: list[IO[str]] = []
        chunk: list[str] = []
        for row in rows:
            chunk.append(_line(row))
            if len(chunk) >= chunk_rows:
                chunk.sort()
                runs.append(_spill(chunk, directory))
                chunk = []
        chunk.sort()
        if not runs:  # it fitted in memory: no disk at all
            merged: Iterable[str] = chunk
        else:
            if chunk:
                runs.append(_spill(chunk, directory))
            while len(runs) > FAN_IN:  # merge in rounds so that at most FAN_IN files are open
                group, runs = runs[:FAN_IN], runs[FAN_IN:]
                runs.append(_spill(heapq.merge(*group), directory))
                for run in group:
                    run.close()
            merged = heapq.merge(*runs)
        previous = None
        try:
            for line in merged:
                if line == previous:
                    report.duplicates += 1
                    report.events -= line.count('"type":')
                    continue
                previous = line
                yield _ROW.validate_json(line[21:])
        finally:
            for run in runs:
                run.close()
