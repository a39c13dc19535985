"""What every loader shares: the load report, streaming file readers, field parsing, row -> events."""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from recstream.records import EventType, Interaction, Video

# A dataset with no watch time (a rating, a comment) still says "this user watched this video": the
# view gets this much watch time and no duration, which the scoring reads as a full-strength positive.
IMPLICIT_WATCH_MS = 60_000

# A real dataset row must carry its own time: `Interaction` turns ts 0 into "now", which would
# silently move the event to the wrong day.
MIN_TS_MS = 1

MAX_BAD_SAMPLES = 20

Row = list[Interaction]
"""The events one input row becomes: a view first, then its flags (like, share, ...) at the same ts."""


class DatasetError(Exception):
    """The file as a whole cannot be read in this format (missing columns, wrong header)."""


class BadRow(ValueError):
    """One row cannot be used; the message says why. The loader skips it and counts it."""


@dataclass
class LoadReport:
    """What a load did: filled in while the iterator is consumed (read it after the loop)."""

    fmt: str = ""
    path: str = ""
    rows: int = 0
    """Data rows read (header and blank lines excluded)."""
    events: int = 0
    """Interactions produced (after duplicates were dropped)."""
    videos: int = 0
    """Video records produced."""
    bad_rows: int = 0
    """Rows skipped because they could not be parsed or validated."""
    bad_samples: list[tuple[int, str]] = field(default_factory=list)
    """(line number, reason) of the first bad rows."""
    duplicates: int = 0
    """Rows dropped because they repeat an earlier row exactly (same events)."""
    out_of_order: int = 0
    """Rows whose timestamp is earlier than an earlier row's (the file is not in time order)."""
    already_in_time_order: bool = False
    """A time-ordered read found the file in time order, so it streamed it instead of sorting it."""

    def bad(self, line: int, reason: str) -> None:
        self.bad_rows += 1
        if len(self.bad_samples) < MAX_BAD_SAMPLES:
            self.bad_samples.append((line, reason))

    def summary(self) -> str:
        text = (
            f"{self.fmt} {self.path}: {self.rows:,} rows -> {self.events:,} events, {self.videos:,} videos; "
            f"{self.bad_rows:,} bad rows, {self.duplicates:,} duplicates, {self.out_of_order:,} out of order"
        )
        for line, reason in self.bad_samples:
            text += f"\n  line {line}: {reason}"
        if self.bad_rows > len(self.bad_samples):
            text += f"\n  ... and {self.bad_rows - len(self.bad_samples):,} more bad rows"
        return text


def open_text(path: Path) -> IO[str]:
    """Open a text file for streaming; `.gz` is decompressed on the fly. Undecodable bytes become U+FFFD
    so one bad byte costs (at most) one row, not the whole file."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def first_line(path: Path) -> str:
    with open_text(path) as f:
        return f.readline().lstrip("\ufeff").rstrip("\r\n")


def csv_rows(
    path: Path, report: LoadReport, delimiter: str = ",", skip_header: bool = True
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank row, in file order, one row in memory at a time.

    Counts `report.rows`; the caller counts the bad ones."""
    with open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        if skip_header:
            try:
                next(reader)
            except StopIteration:
                return
            except csv.Error:
                pass
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # NUL byte, runaway quoted field: lose the row, keep the file
                report.rows += 1
                report.bad(reader.line_num, f"unreadable: {exc}")
                continue
            if fields and any(f.strip() for f in fields):
                report.rows += 1
                yield reader.line_num, fields


def csv_times(path: Path, column: int | None, skip_header: bool = True) -> Iterator[int | float | None]:
    """The raw time cell of every data row in file order: a number, or None where it is not a finite
    number (or there is no such column). Cheap (no validation): what `in_time_order` scans.

    Decimal cells are ints, so order is exact however big they are; the loaders' scaling to ms is
    monotone, so raw order is the loaded order."""
    if column is None:
        yield None
        return
    with open_text(path) as f:
        reader = csv.reader(f)
        if skip_header:
            next(reader, None)
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error:
                yield None
                continue
            if not fields or not any(f.strip() for f in fields):
                continue  # blank: the loaders skip it too
            text = fields[column].strip() if column < len(fields) else ""
            if text.isdecimal():
                yield int(text)
                continue
            try:
                value = float(text)
            except ValueError:
                yield None
                continue
            yield value if math.isfinite(value) else None


class Columns:
    """Header names -> positions, accepting a few spellings per field; names what is missing."""

    def __init__(self, header: Sequence[str], fmt: str) -> None:
        self.names = [h.strip().lstrip("\ufeff").split(":")[0].lower() for h in header]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.fmt = fmt

    def find(self, *aliases: str, required: bool = True) -> int | None:
        for alias in aliases:
            if alias in self.index:
                return self.index[alias]
        if required:
            raise DatasetError(f"{self.fmt}: no column {' / '.join(aliases)} in header {self.names}")
        return None


def header_of(path: Path, fmt: str, delimiter: str = ",") -> Columns:
    with open_text(path) as f:
        try:
            header = next(csv.reader(f, delimiter=delimiter))
        except StopIteration:
            raise DatasetError(f"{fmt}: {path} is empty") from None
    return Columns(header, fmt)


def cell(fields: Sequence[str], index: int | None) -> str:
    """The stripped field, or "" when the column is absent or the row is short."""
    if index is None or index >= len(fields):
        return ""
    return fields[index].strip()


MISSING = frozenset(("nan", "null", "none", "na"))
"""Cells that mean "no value" (any case), beside the empty one."""


def number(text: str, name: str, required: bool = True) -> float | None:
    """A finite number; "", "nan" and "null" are missing (an error only when required)."""
    try:
        value = float(text)
    except ValueError:
        if text == "" or text.lower() in MISSING:
            return _missing(name, required)
        raise BadRow(f"{name} is not a number: {text[:40]!r}") from None
    if value != value:  # "nan" is missing, not a bad number
        return _missing(name, required)
    if not math.isfinite(value):
        raise BadRow(f"{name} is not finite: {text[:40]!r}")
    return value


def _missing(name: str, required: bool) -> None:
    if required:
        raise BadRow(f"{name} is missing")
    return None


def millis(text: str, name: str, scale: float, required: bool = True) -> int | None:
    """A duration or time in some unit (`scale` = ms per unit) -> int ms, rejecting negatives."""
    if scale == 1 and text.isdecimal():  # the common case, exact however big (no float on the way)
        return int(text)
    value = number(text, name, required)
    if value is None:
        return None
    if value < 0:
        raise BadRow(f"{name} is negative: {text[:40]!r}")
    return round(value * scale)


def flag(text: str, name: str) -> bool:
    """0/1, true/false (any case), 0.0/1.0; empty is false (a missing flag is an absent action)."""
    if text == "0" or text == "":
        return False
    if text == "1":
        return True
    low = text.lower()
    if low in ("", "0", "0.0", "false", "f", "no", "nan"):
        return False
    if low in ("1", "1.0", "true", "t", "yes"):
        return True
    raise BadRow(f"{name} is not a 0/1 flag: {text[:40]!r}")


def identifier(text: str, name: str) -> str:
    """Ids are strings on the wire; a float-formatted integer id ("42.0", pandas' habit) becomes "42"."""
    if not text:
        raise BadRow(f"{name} is missing")
    if text.endswith(".0") and text[:-2].isdigit():
        return text[:-2]
    return text


def row_events(
    user_id: str,
    video_id: str,
    ts: int | None,
    watch_time_ms: int | None,
    duration_ms: int | None,
    actions: Iterable[EventType] = (),
) -> Row:
    """A view (with watch time and duration) plus one event per action flag, all at the view's ts.

    A zero duration is unknown (None), so a watch ratio is never computed from it; a watch time longer
    than the duration (a replay) is kept as it is.
    """
    if ts is None or ts < MIN_TS_MS:
        raise BadRow(f"timestamp must be a positive epoch time, got {ts}")
    if watch_time_ms is None:
        watch_time_ms = duration_ms or IMPLICIT_WATCH_MS
    try:
        view = Interaction(
            type="view",
            user_id=user_id,
            video_id=video_id,
            ts=ts,
            watch_time_ms=watch_time_ms,
            duration_ms=duration_ms or None,
        )
        return [view] + [Interaction(type=a, user_id=user_id, video_id=video_id, ts=ts) for a in actions]
    except ValidationError as exc:
        raise BadRow(_short(exc)) from None


def make_video(**fields: object) -> Video:
    try:
        return Video(**fields)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise BadRow(_short(exc)) from None


def unknown_creator(video_id: str) -> str:
    """Placeholder creator for datasets without one: one per video, so the serving creator cap (at most
    N videos per creator) never binds on a made-up creator shared by the whole catalog."""
    return f"unknown-{video_id}"


def _short(exc: ValidationError) -> str:
    e = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in e["loc"])
    return f"{where}: {e['msg']}" if where else e["msg"]
