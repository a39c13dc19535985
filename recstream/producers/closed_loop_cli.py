"""`recstream simulate --closed-loop`: the closed loop's flags and entry point (the loop itself is
`recstream.producers.closed_loop`). The world's --users/--videos/--seed are `simulate`'s own."""

from __future__ import annotations

import argparse
import asyncio
import json

from recstream.producers.closed_loop import LoopConfig, run_loop


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The closed loop's flags, for `recstream simulate`."""
    group = parser.add_argument_group("closed loop (--closed-loop)")
    group.add_argument(
        "--closed-loop",
        action="store_true",
        help="users request /recommendations and react to them, per strategy bucket",
    )
    group.add_argument("--loop-users", type=int, default=LoopConfig.users, help="users taking part")
    group.add_argument("--loop-rounds", type=int, default=LoopConfig.rounds, help="requests per user")
    group.add_argument("--loop-k", type=int, default=LoopConfig.k, help="videos per request")
    group.add_argument(
        "--warmup-events",
        type=int,
        default=LoopConfig.warmup_events,
        help="organic events published before the loop",
    )
    group.add_argument("--api-url", default="", help="API base URL (default: from the settings)")
    group.add_argument(
        "--loop-scroll-stop",
        type=float,
        default=LoopConfig.scroll_stop,
        help="chance a user stops scrolling after each video (the rest: shown, not watched)",
    )
    group.add_argument(
        "--loop-train",
        action="store_true",
        help="train an ALS model from the log after the warm-up and wait until it is served",
    )
    group.add_argument(
        "--loop-train-trials",
        type=int,
        default=LoopConfig.train_trials,
        help="ALS parameter sets the training round tries",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point for `recstream simulate --closed-loop`: prints the summary as JSON."""
    from recstream.datasets.synthetic import WorldConfig
    from recstream.settings import get_settings

    world = WorldConfig(users=args.users, videos=args.videos, seed=args.seed)
    loop = LoopConfig(
        users=min(args.loop_users, args.users),
        rounds=args.loop_rounds,
        k=args.loop_k,
        warmup_events=args.warmup_events,
        api_url=args.api_url,
        seed=args.seed,
        scroll_stop=args.loop_scroll_stop,
        train=args.loop_train,
        train_trials=args.loop_train_trials,
    )
    summary = asyncio.run(run_loop(get_settings(), world, loop))
    print(json.dumps({k: v for k, v in summary.items() if k != "assignments"}, indent=2))
    return 0
