"""`recstream simulate`: publish the synthetic world's catalog, then its event stream, to Kafka.

The world itself (tastes, popularity, sessions, watch behaviour) is `recstream.datasets.synthetic`;
`SimulatedWorld` is re-exported here. Events are stamped with the wall-clock time they are sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recstream.datasets.synthetic import SimulatedWorld, WorldConfig
from recstream.producers import closed_loop_cli
from recstream.records import now_ms

if TYPE_CHECKING:
    from recstream.settings import Settings

__all__ = ["SimConfig", "SimulatedWorld", "WorldConfig", "add_arguments", "run", "run_simulation", "simulate"]


@dataclass(frozen=True)
class SimConfig(WorldConfig):
    """The world, plus how a run publishes it."""

    rate: float = 0.0
    """Events per second to publish; 0 = as fast as possible."""
    duration_s: float = 60.0
    """Run length: rate x duration events when rate > 0, else wall-clock seconds; 0 = until stopped."""
    max_events: int | None = None
    """Stop after this many events (overrides duration)."""
    quiet: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=1000, help="number of simulated users")
    parser.add_argument("--videos", type=int, default=5000, help="size of the video catalog")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="events per second; 0 = as fast as possible"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (0 = until Ctrl-C)")
    parser.add_argument("--events", type=int, default=None, help="stop after this many events")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same catalog, tastes and actions")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="write --events events (default 100,000) to FILE as JSON lines instead of "
        "publishing them (a log `recstream evaluate jsonl` and `recstream train --dataset` read)",
    )
    closed_loop_cli.add_arguments(parser)


def write_log(args: argparse.Namespace) -> int:
    """The world's organic events, the same as a published run's (virtual clock), to a JSON-lines file."""
    import itertools

    from recstream.datasets.synthetic import SimulatedWorld

    world = SimulatedWorld(SimConfig(users=args.users, videos=args.videos, seed=args.seed))
    n = args.events or 100_000
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as f:
        for event in itertools.islice(world.events(), n):
            f.write(event.model_dump_json(exclude_none=True) + "\n")
    print(
        json.dumps(
            {"events": n, "users": args.users, "videos": args.videos, "seed": args.seed, "out": str(args.out)}
        )
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from recstream.settings import get_settings

    if args.closed_loop:
        return closed_loop_cli.run(args)
    if args.out is not None:
        return write_log(args)

    config = SimConfig(
        users=args.users, videos=args.videos, seed=args.seed, rate=args.rate,
        duration_s=args.duration, max_events=args.events, quiet=args.quiet,
    )  # fmt: skip
    stats = run_simulation(get_settings(), config)
    print(json.dumps(stats))
    return 0


def run_simulation(settings: Settings, config: SimConfig) -> dict[str, Any]:
    """Publish the catalog, then the event stream at `config.rate`; returns what was sent."""
    return asyncio.run(simulate(settings, config))


async def simulate(settings: Settings, config: SimConfig) -> dict[str, Any]:
    from recstream.producers.publish import Publisher, progress_bar

    world = SimulatedWorld(config)
    limit = config.max_events
    if limit is None and config.rate > 0 and config.duration_s > 0:
        limit = round(config.rate * config.duration_s)
    counts: dict[str, int] = {}
    async with Publisher(settings) as publisher:
        for video in world.catalog(created_at=now_ms()):
            await publisher.video(video)
        await publisher.flush()  # the catalog is in the log before any event that refers to it
        progress = progress_bar("simulate", f"{config.videos:,} videos", quiet=config.quiet)
        started = time.monotonic()
        timed = limit is None and config.duration_s > 0  # rate 0: run for duration_s of wall clock
        deadline = started + config.duration_s if timed else None
        for n, event in enumerate(world.events(clock=now_ms)):
            if (limit is not None and n >= limit) or (
                deadline is not None and n % 256 == 0 and time.monotonic() >= deadline
            ):
                break
            await publisher.event(event)
            counts[event.type] = counts.get(event.type, 0) + 1
            progress.update()
            if config.rate > 0 and n % 64 == 0:  # pace: sleep whenever ahead of the schedule
                ahead = n / config.rate - (time.monotonic() - started)
                if ahead > 0.002:
                    await asyncio.sleep(ahead)
    progress.close()
    elapsed = time.monotonic() - started
    sent = sum(counts.values())
    return {
        "videos": config.videos,
        "events": sent,
        "by_type": counts,
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(sent / elapsed, 1) if elapsed else None,
        "config": asdict(config),
    }
