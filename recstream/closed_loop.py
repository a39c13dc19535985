"""Closed-loop online evaluation: simulated users with hidden tastes use the real API.

`recstream simulate --closed-loop` publishes the synthetic world's catalog (POST /videos) and a
warm-up of organic sessions (POST /events), then runs rounds: every loop user asks
GET /recommendations/{user}, watches (or skips) each video shown according to their hidden taste,
and the resulting events go back through POST /events -> Kafka -> the agents, so the next round is
served from state the loop itself changed. Serving puts each user in a bucket by a stable hash and
names the strategy that served the list (`strategy` in the response; see
recstream.evaluation.buckets); per strategy the loop reports watch time, completion rate and like rate
per impression, and the mean hidden taste of what was shown, each with a 95 % confidence interval
over users, and stores them in MongoDB (collection `closed_loop`, one document per run and strategy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from recstream.records import Interaction, Video, now_ms

if TYPE_CHECKING:
    from recstream.datasets.synthetic import SimulatedWorld
    from recstream.settings import Settings

COLLECTION = "closed_loop"
UNLABELLED = "unlabelled"  # a response without `strategy`: serving does not bucket users yet
POST_BATCH = 1000
FAST_SKIP_MS = 2000


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
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6])


@dataclass
class Impression:
    user: str
    video: str
    strategy: str
    taste: float
    base_taste: float  # the user's mean taste over the whole catalogue: what random shows on average
    watch_ms: int
    duration_ms: int
    completed: bool
    liked: bool
    repeat: bool = False
    """The user had been shown this video 3+ times before without engaging with it (a view past the
    fast skip, or a like): the exposure serving's impressions rule should prevent."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The closed loop's flags, for `recstream simulate` (the world's --users/--videos/--seed are its own)."""
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


def run(args: argparse.Namespace) -> int:
    """Entry point for `recstream simulate --closed-loop`."""
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
    )
    summary = asyncio.run(run_loop(get_settings(), world, loop))
    print(json.dumps({k: v for k, v in summary.items() if k != "assignments"}, indent=2))
    return 0


# --- how a simulated user reacts to one video --------------------------------------------------
def react(
    world: SimulatedWorld,
    rng: random.Random,
    user: int,
    video: int,
    ts: int,
    completion_ratio: float,
    base_taste: float = math.nan,
) -> tuple[list[Interaction], Impression]:
    """A view (fast skip or a taste-driven watch ratio, replays on loved short videos) plus a like
    with a taste x watch probability: the response curves of the world's organic sessions, driven by
    the world's own `taste()`."""
    t = world.taste(user, video)
    d = int(world.duration_ms[video])
    u, v = world.user_id(user), world.video_id(video)
    if rng.random() < 0.05 + 0.6 * (1 - t) ** 2:
        watch = rng.randint(150, FAST_SKIP_MS - 1)
    else:
        ratio = rng.betavariate(1 + 5 * t, 1 + 5 * (1 - t))
        if ratio > 0.8 and rng.random() < t * t * min(1.0, 20_000 / d):
            ratio = 1 + rng.random() * (2.0 if d < 15_000 else 1.0)
        watch = round(ratio * d)
    events = [Interaction(type="view", user_id=u, video_id=v, ts=ts, watch_time_ms=watch, duration_ms=d)]
    liked = watch >= FAST_SKIP_MS and rng.random() < 0.02 + 0.3 * t * min(watch / d, 1.5)
    if liked:
        events.append(Interaction(type="like", user_id=u, video_id=v, ts=ts))
    impression = Impression(u, v, UNLABELLED, t, base_taste, watch, d, watch >= completion_ratio * d, liked)
    return events, impression


# --- statistics -------------------------------------------------------------------------------
REPEAT_SHOWINGS = 3
METRICS: dict[str, Callable[[list[Impression]], float]] = {
    "watch_time_ms": lambda imps: sum(i.watch_ms for i in imps) / len(imps),
    "completion_rate": lambda imps: sum(i.completed for i in imps) / len(imps),
    "like_rate": lambda imps: sum(i.liked for i in imps) / len(imps),
    # Click-through: impressions watched past the fast skip (the feed's "did they take it").
    "click_through": lambda imps: sum(i.watch_ms >= FAST_SKIP_MS for i in imps) / len(imps),
    "repeat_exposure": lambda imps: sum(i.repeat for i in imps) / len(imps),
    "taste": lambda imps: sum(i.taste for i in imps) / len(imps),
    # Shown minus catalogue-average taste, per user: what a strategy adds over chance, with the
    # between-user spread of taste levels taken out (so far tighter intervals than `taste`).
    "taste_lift": lambda imps: sum(i.taste - i.base_taste for i in imps) / len(imps),
}


def mean_ci(values: list[float]) -> dict[str, float | None]:
    """Mean over users and the half-width of its 95 % normal-approximation confidence interval."""
    n = len(values)
    if n == 0:
        return {"mean": None, "ci95": None}
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "ci95": None}
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return {"mean": mean, "ci95": 1.96 * math.sqrt(var / n)}


def summarise(impressions: list[Impression]) -> dict[str, dict[str, Any]]:
    """Per strategy: users, impressions, and each metric's per-user mean with its CI (users are the
    unit: one user's impressions are not independent of each other)."""
    by_strategy: dict[str, dict[str, list[Impression]]] = defaultdict(lambda: defaultdict(list))
    for imp in impressions:
        by_strategy[imp.strategy][imp.user].append(imp)
    out = {}
    for strategy, users in sorted(by_strategy.items()):
        row: dict[str, Any] = {"users": len(users), "impressions": sum(len(v) for v in users.values())}
        for name, metric in METRICS.items():
            row[name] = mean_ci([metric(imps) for imps in users.values()])
        out[strategy] = row
    return out


# --- the loop ---------------------------------------------------------------------------------
async def _post(session: Any, url: str, items: list[Any], key: str) -> None:
    for start in range(0, len(items), POST_BATCH):
        body = {
            key: [json.loads(x.model_dump_json(exclude_none=True)) for x in items[start : start + POST_BATCH]]
        }
        async with session.post(url, json=body) as resp:
            if resp.status != 202:
                raise RuntimeError(f"POST {url} -> {resp.status}: {(await resp.text())[:300]}")


async def warm_up(session: Any, api: str, world: SimulatedWorld, config: LoopConfig) -> None:
    videos: list[Video] = list(world.catalog(created_at=now_ms()))
    await _post(session, f"{api}/videos", videos, "videos")
    events = []
    for n, event in enumerate(world.events(clock=now_ms)):
        if n >= config.warmup_events:
            break
        events.append(event)
    await _post(session, f"{api}/events", events, "events")


async def wait_ready(session: Any, api: str, probe_user: str, timeout_s: float = 90.0) -> None:
    """Until the worker has digested some of the warm-up: trending is non-empty and a user gets a list
    (a worker that has just started may not own its partitions yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with session.get(f"{api}/trending", params={"k": 1}) as resp:
            trending = (await resp.json()).get("items") if resp.status == 200 else None
        async with session.get(f"{api}/recommendations/{probe_user}", params={"k": 1}) as resp:
            recs = (await resp.json()).get("items") if resp.status == 200 else None
        if trending and recs:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the API at {api} served no trending videos or recommendations after the warm-up"
            )
        await asyncio.sleep(0.5)


async def _serve_user(
    session: Any,
    api: str,
    world: SimulatedWorld,
    user: int,
    config: LoopConfig,
    rng: random.Random,
    completion_ratio: float,
    exposure: dict[tuple[int, int], list],
) -> tuple[list[Interaction], list[Impression]]:
    async with session.get(f"{api}/recommendations/{world.user_id(user)}", params={"k": config.k}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"GET /recommendations -> {resp.status}: {(await resp.text())[:300]}")
        body = await resp.json()
    strategy = body.get("strategy") or UNLABELLED
    base = float(world.tastes(user).mean())
    events: list[Interaction] = []
    impressions: list[Impression] = []
    for item in body.get("items", []):
        video = int(item["video_id"].removeprefix("v"))
        evs, imp = react(world, rng, user, video, now_ms(), completion_ratio, base)
        imp.strategy = strategy
        past = exposure.setdefault((user, video), [0, False])  # [times shown, engaged]
        imp.repeat = past[0] >= REPEAT_SHOWINGS and not past[1]
        past[0] += 1
        past[1] = past[1] or imp.watch_ms >= FAST_SKIP_MS or imp.liked
        events += evs
        impressions.append(imp)
    return events, impressions


async def run_loop(
    settings: Settings, world_config: Any, config: LoopConfig, log: Callable[[str], None] = print
) -> dict[str, Any]:
    import aiohttp

    from recstream.datasets.synthetic import SimulatedWorld

    world = SimulatedWorld(world_config)
    api = (config.api_url or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")
    rng = random.Random(config.seed + 7)
    users = [int(u) for u in world.activity.argsort()[::-1][: config.users]]
    impressions: list[Impression] = []
    exposure: dict[tuple[int, int], list] = {}
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=60)
    key = settings.write_api_key  # its writes (and reads) need it when the server has keys
    headers = {"X-API-Key": key.get_secret_value()} if key is not None else {}
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        if config.warmup_events:
            await warm_up(session, api, world, config)
            await wait_ready(session, api, world.user_id(users[0]))
            log(f"[closed-loop] warm-up: {world_config.videos} videos, {config.warmup_events} events")
        limit = asyncio.Semaphore(config.concurrency)

        async def one(u: int) -> tuple[list[Interaction], list[Impression]]:
            async with limit:
                return await _serve_user(session, api, world, u, config, rng, settings.completion_ratio, exposure)

        for r in range(config.rounds):
            results = await asyncio.gather(*(one(u) for u in users))
            events = [e for evs, _ in results for e in evs]
            impressions += [i for _, imps in results for i in imps]
            await _post(session, f"{api}/events", events, "events")
            log(f"[closed-loop] round {r + 1}/{config.rounds}: {len(events)} events from {len(users)} users")
            await asyncio.sleep(config.pause_s)
    per_strategy = summarise(impressions)
    summary = {
        "run_id": config.run_id,
        "elapsed_s": round(time.monotonic() - started, 2),
        "config": asdict(config),
        "world": asdict(world_config),
        "strategies": per_strategy,
    }
    await save(settings, summary)
    # Which strategy served each user (not stored: the documents hold the figures).
    summary["assignments"] = {i.user: i.strategy for i in impressions}
    return summary


async def save(settings: Settings, summary: dict[str, Any]) -> None:
    """One document per (run, strategy) in MongoDB's `closed_loop` collection."""
    from recstream.stores import Stores

    stores = Stores(settings)
    try:
        docs = {
            f"{summary['run_id']}:{strategy}": {
                "run_id": summary["run_id"],
                "strategy": strategy,
                "created_at": now_ms(),
                "config": summary["config"],
                "world": summary["world"],
                **figures,
            }
            for strategy, figures in summary["strategies"].items()
        }
        await stores.upsert_many(COLLECTION, docs)
    finally:
        await stores.close()
