"""`recstream replay`: publish a dataset to Kafka in timestamp order (its videos first).

Timestamps: by default every event keeps the dataset's own ts, so event-time windows and the ALS
holdout see the dataset's real time line; `--speed X` only paces the sending (X times faster than the
original gaps). `--retime` instead stamps each event with the wall-clock time it is sent, as if the
log were happening live (what trending windows and "fresh" candidates need); videos are then
published as created now, otherwise as created at the log's first event.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recstream.datasets import FORMATS, DatasetError, LoadReport, iter_encoded_sorted, iter_videos
from recstream.datasets.sort import DEFAULT_CHUNK_ROWS
from recstream.producers.publish import CHUNK_RECORDS, Publisher, progress_bar
from recstream.records import now_ms

if TYPE_CHECKING:
    from recstream.settings import Settings

# Formats whose interaction file carries the video attributes too (used when --videos is not given).
VIDEOS_IN_LOG = {"tsinghua"}
POSTFIX_EVERY = 1024
"""Events between updates of the progress line's "at <time>"."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=list(FORMATS), help="dataset format")
    parser.add_argument("path", type=Path, help="the interactions file")
    parser.add_argument("--videos", type=Path, metavar="PATH",
                        help="metadata file (microlens *_titles.csv, tsinghua video table)")  # fmt: skip
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, help="replay X times faster than the original gaps")
    pace.add_argument("--as-fast-as-possible", action="store_true", help="no waiting (the default)")
    parser.add_argument("--limit", type=int, help="publish at most N events")
    parser.add_argument("--retime", action="store_true", help="stamp events with the time they are sent")
    parser.add_argument(
        "--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows sorted in memory at once"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def run(args: argparse.Namespace) -> int:
    from recstream.settings import get_settings

    if args.speed is not None and args.speed <= 0:
        print("error: --speed must be > 0", file=sys.stderr)
        return 2
    try:
        stats = run_replay(
            get_settings(), args.format, args.path, videos_path=args.videos, speed=args.speed,
            limit=args.limit, retime=args.retime, chunk_rows=args.chunk_rows, quiet=args.quiet,
        )  # fmt: skip
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0


def run_replay(
    settings: Settings,
    fmt: str,
    path: str | Path,
    *,
    videos_path: str | Path | None = None,
    speed: float | None = None,
    limit: int | None = None,
    retime: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    quiet: bool = False,
) -> dict[str, Any]:
    """Publish the dataset's videos, then its events in timestamp order; returns counts and the report."""
    return asyncio.run(replay(settings, fmt, path, videos_path, speed, limit, retime, chunk_rows, quiet))


async def replay(
    settings: Settings,
    fmt: str,
    path: str | Path,
    videos_path: str | Path | None,
    speed: float | None,
    limit: int | None,
    retime: bool,
    chunk_rows: int,
    quiet: bool,
) -> dict[str, Any]:
    report, video_report = LoadReport(), LoadReport()
    if videos_path is None and fmt in VIDEOS_IN_LOG:
        videos_path = path
    # Read up to the first event before connecting, so a bad file fails fast and the videos can be
    # dated from the log's first event. A file already in time order streams from there (the worker
    # gets events within a second); any other is sorted first, which reads all of it. Events come out
    # as the bytes the sort holds (validated when loaded), so they are sent without being parsed again.
    sort_bars = []  # a progress line for the sort, only if there is one

    def sorting(rows: int) -> None:
        if not sort_bars:
            sort_bars.append(progress_bar("sorting (not in time order)", quiet=quiet, unit="rows"))
        sort_bars[0].update(rows)

    events = iter_encoded_sorted(fmt, path, report, chunk_rows=chunk_rows, sorting=sorting)
    first = next(events, None)
    for bar in sort_bars:
        bar.close()
    created_at = now_ms() if retime or first is None else first[0]
    progress = progress_bar("replay", quiet=quiet)
    started = time.monotonic()
    sent_videos = sent_events = shown = 0
    first_ts = last_ts = None
    # Paced, each event goes to the publisher when its moment comes (the publisher lingers a few ms
    # to batch); otherwise in chunks, which is what makes an unpaced replay cheap.
    chunk_size = 1 if speed is not None else CHUNK_RECORDS
    async with Publisher(settings) as publisher:
        if videos_path is not None:
            for video in iter_videos(fmt, videos_path, video_report):
                await publisher.video(video.model_copy(update={"created_at": created_at}))
                sent_videos += 1
            await publisher.flush()  # the catalog is in the log before any event that refers to it
        wall0 = time.monotonic()

        async def send(chunk: list[tuple[bytes, bytes]]) -> None:
            nonlocal sent_events, shown
            await publisher.encoded_events(chunk)
            sent_events += len(chunk)
            progress.update(len(chunk))
            if sent_events - shown >= POSTFIX_EVERY and last_ts is not None:
                shown = sent_events
                at = datetime.fromtimestamp(last_ts / 1000, UTC).strftime("%Y-%m-%d %H:%M")
                progress.set_postfix_str("at " + at, refresh=False)

        chunk: list[tuple[bytes, bytes]] = []
        for ts, user_id, value in itertools.islice(
            itertools.chain([first] if first is not None else [], events), limit
        ):
            if first_ts is None:
                first_ts = ts
            last_ts = ts
            if speed is not None:  # wait until this event's (scaled) moment has come
                ahead = wall0 + (ts - first_ts) / 1000 / speed - time.monotonic()
                if ahead > 0.002:
                    await asyncio.sleep(ahead)
            chunk.append((user_id, retimed(value, now_ms()) if retime else value))
            if len(chunk) >= chunk_size:
                await send(chunk)
                chunk = []
        if chunk:
            await send(chunk)
    progress.close()
    if not quiet:
        print(report.summary(), file=sys.stderr)
        if videos_path is not None:
            print(video_report.summary(), file=sys.stderr)
    elapsed = time.monotonic() - started
    return {
        "format": fmt,
        "videos": sent_videos,
        "video_bad_rows": video_report.bad_rows,
        "events": sent_events,
        "rows": report.rows,
        "bad_rows": report.bad_rows,
        "bad_samples": report.bad_samples,
        "duplicates": report.duplicates,
        "out_of_order_rows": report.out_of_order,
        "streamed_without_sort": report.already_in_time_order,
        "first_ts": first_ts,
        "last_ts": last_ts,
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(sent_events / elapsed, 1) if elapsed else None,
    }


def retimed(value: bytes, ts: int) -> bytes:
    """An encoded Interaction with its ts replaced: the bytes `encode` gives for the event at `ts`.

    `"ts":` occurs once (ids hold no quotes) and the number ends at the next ',' (more fields follow)
    or at the closing brace."""
    start = value.index(b'"ts":') + 5
    end = value.find(b",", start)
    if end < 0:
        end = len(value) - 1
    return b"%b%d%b" % (value[:start], ts, value[end:])
