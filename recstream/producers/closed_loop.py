"""Closed-loop online evaluation: simulated users with hidden tastes use the real API.

`recstream simulate --closed-loop` publishes the synthetic world's catalog (POST /videos) and a
warm-up of organic sessions (POST /events), then runs rounds: every loop user asks
GET /recommendations/{user}, watches (or skips) each video shown according to their hidden taste,
and the resulting events go back through POST /events -> Kafka -> the agents, so the next round is
served from state the loop itself changed. Serving puts each user in a bucket by a stable hash and
names the strategy that served the list (`strategy` in the response; see
recstream.serving.recommend.strategy_for); per strategy the loop reports watch time, completion rate
and like rate per impression, click-through, repeat exposure and the mean hidden taste of what was
shown, each with a 95 % confidence interval over users, and each bucket's difference from the served
default (`hybrid`) with its interval and whether it is significant; it stores them in MongoDB
(collection `closed_loop`, one document per run and strategy).

With `--loop-train` the loop trains an ALS model from the log right after the warm-up
(`recstream train`, the same job as production, its tuning budget from `--loop-train-trials`) and
waits until the API serves it, so the `hybrid` and `als` buckets really use ALS and the blend weights
that training chose.

This module runs the loop and records it (`run_loop`, `save`); beside it:

    closed_loop_cli     the `recstream simulate --closed-loop` flags and entry point
    closed_loop_api     the HTTP API as the loop uses it (aiohttp): posts, recommendations, waits
    closed_loop_users   how a simulated user reacts to a served list: events and impressions
    closed_loop_stats   per-strategy means with confidence intervals, differences from the default
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from recstream.producers.closed_loop_api import LoopApi
from recstream.producers.closed_loop_stats import SERVED_DEFAULT, compare, summarise
from recstream.producers.closed_loop_users import Exposure, Impression, react_to_list
from recstream.records import Interaction, now_ms

if TYPE_CHECKING:
    from recstream.settings import Settings

COLLECTION = "closed_loop"


@dataclass(frozen=True)
class LoopConfig:
    users: int = 200
    """Simulated users taking part in the loop: the world's N most active ones (those with a history
    to personalise from; a user nobody has seen is a cold-start test, not a taste test)."""
    rounds: int = 5
    """Recommendation requests per user."""
    k: int = 10
    """Videos per request; each one is an impression the user reacts to."""
    warmup_events: int = 20_000
    """Organic events published first, so that trending and item-CF have something to work with."""
    pause_s: float = 1.0
    """Wait after each round, for the agents to fold its events into the state serving reads."""
    concurrency: int = 16
    api_url: str = ""
    """Base URL of the API (default: the settings' web host and port)."""
    seed: int = 0
    scroll_stop: float = 0.0
    """After each video, the chance the user stops scrolling: the rest of the list is shown but never
    watched (impressions without any event, which serving can only learn of from the impressions
    topic). 0: every video shown is watched or skipped."""
    train: bool = False
    """Train an ALS model from the log after the warm-up and serve it before the first round."""
    train_trials: int = 4
    """The training round's ALS tuning budget (`--tune-trials`)."""
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6])


def train_model(settings: Settings, trials: int) -> dict[str, Any]:
    """One `recstream train` round against the same Kafka, Redis and MongoDB as `settings` (the
    production job, in its own process: its JVM and memory go when it ends)."""
    env = {
        **os.environ,
        **{
            f"RECSTREAM_{name.upper()}": str(getattr(settings, name))
            for name in ("kafka_bootstrap", "redis_url", "mongo_url", "mongo_db", "topic_prefix", "app_id")
        },
    }
    cli = os.path.join(os.path.dirname(sys.executable), "recstream")
    done = subprocess.run(
        [cli, "train", "--json", "--tune-trials", str(trials), "--driver-memory", "1g"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode not in (0, 5) or not lines:  # 5: trained, refused by the gate
        raise RuntimeError(f"recstream train failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(lines[-1])
    return {
        k: result.get(k) for k in ("version", "activated", "gate", "metrics", "baseline", "served", "blend")
    }


async def run_loop(
    settings: Settings, world_config: Any, config: LoopConfig, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Warm-up, optional training, the rounds; returns the summary (stored with `save`) and which
    strategy served each user (`assignments`, not stored)."""
    from recstream.datasets.synthetic import SimulatedWorld

    world = SimulatedWorld(world_config)
    rng = random.Random(config.seed + 7)
    users = [int(u) for u in world.activity.argsort()[::-1][: config.users]]
    impressions: list[Impression] = []
    exposure: Exposure = {}
    started = time.monotonic()
    key = settings.write_api_key
    api_url = config.api_url or f"http://{settings.web_host}:{settings.web_port}"
    async with LoopApi(api_url, key.get_secret_value() if key is not None else None) as api:
        if config.warmup_events:
            await api.post_videos(list(world.catalog(created_at=now_ms())))
            events: list[Interaction] = []
            for n, event in enumerate(world.events(clock=now_ms)):
                if n >= config.warmup_events:
                    break
                events.append(event)
            await api.post_events(events)
            await api.wait_ready(world.user_id(users[0]))
            log(f"[closed-loop] warm-up: {world_config.videos} videos, {config.warmup_events} events")
        model = None
        if config.train:
            log("[closed-loop] training an ALS model from the log ...")
            model = await asyncio.to_thread(train_model, settings, config.train_trials)
            log(
                f"[closed-loop] model {model['version']}: activated={model['activated']} ({model['gate']['reason']})"
            )
            if model["activated"]:
                await api.wait_served(model["version"], [world.user_id(u) for u in users])
        limit = asyncio.Semaphore(config.concurrency)

        async def one(u: int) -> tuple[list[Interaction], list[Impression]]:
            async with limit:
                answer = await api.recommendations(world.user_id(u), config.k)
            return react_to_list(
                world, rng, u, answer, config.scroll_stop, settings.completion_ratio, exposure
            )

        for r in range(config.rounds):
            results = await asyncio.gather(*(one(u) for u in users))
            events = [e for evs, _ in results for e in evs]
            impressions += [i for _, imps in results for i in imps]
            await api.post_events(events)
            log(f"[closed-loop] round {r + 1}/{config.rounds}: {len(events)} events from {len(users)} users")
            await asyncio.sleep(config.pause_s)
    per_strategy = summarise(impressions)
    summary = {
        "run_id": config.run_id,
        "elapsed_s": round(time.monotonic() - started, 2),
        "config": asdict(config),
        "world": asdict(world_config),
        "model": model,
        "strategies": per_strategy,
        "versus_" + SERVED_DEFAULT: compare(per_strategy),
    }
    await save(settings, summary)
    # Which strategy served each user (not stored: the documents hold the figures).
    summary["assignments"] = {i.user: i.strategy for i in impressions}
    return summary


async def save(settings: Settings, summary: dict[str, Any]) -> None:
    """One document per (run, strategy) in MongoDB's `closed_loop` collection (the dashboard shows the
    newest run)."""
    from recstream.serving.stores import Stores

    stores = Stores(settings)
    try:
        docs = {
            f"{summary['run_id']}:{strategy}": {
                "run_id": summary["run_id"],
                "strategy": strategy,
                "created_at": now_ms(),
                "config": summary["config"],
                "world": summary["world"],
                "model": summary.get("model"),
                "versus_" + SERVED_DEFAULT: summary.get("versus_" + SERVED_DEFAULT, {}).get(strategy),
                **figures,
            }
            for strategy, figures in summary["strategies"].items()
        }
        await stores.upsert_many(COLLECTION, docs)
    finally:
        await stores.close()
