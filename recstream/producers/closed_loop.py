"""Closed-loop online evaluation: simulated users with hidden tastes use the real API.

`recstream simulate --closed-loop` publishes the synthetic world's catalog (POST /videos) and a
warm-up of organic sessions (POST /events), then runs rounds: every loop user asks
GET /recommendations/{user}, watches (or skips) each video shown according to their hidden taste,
and the resulting events go back through POST /events -> Kafka -> the agents, so the next round is
served from state the loop itself changed. Serving puts each user in a bucket by a stable hash and
names the strategy that served the list (`strategy` in the response; see
recstream.evaluation.buckets); per strategy the loop reports watch time, completion rate and like rate
per impression, click-through, repeat exposure and the mean hidden taste of what was shown, each
with a 95 % confidence interval over users, and each bucket's difference from the served default
(`hybrid`) with its interval and whether it is significant; it stores them in MongoDB (collection
`closed_loop`, one document per run and strategy).

With `--loop-train` the loop trains an ALS model from the log right after the warm-up
(`recstream train`, the same job as production, its tuning budget from `--loop-train-trials`) and
waits until the API serves it, so the `hybrid` and `als` buckets really use ALS and the blend weights
that training chose.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import subprocess
import sys
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
    scroll_stop: float = 0.0
    """After each video, the chance the user stops scrolling: the rest of the list is shown but never
    watched (impressions without any event, which serving can only learn of from the impressions
    topic). 0: every video shown is watched or skipped."""
    train: bool = False
    """Train an ALS model from the log after the warm-up and serve it before the first round."""
    train_trials: int = 4
    """The training round's ALS tuning budget (`--tune-trials`)."""
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
        scroll_stop=args.loop_scroll_stop,
        train=args.loop_train,
        train_trials=args.loop_train_trials,
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


def difference(a: dict[str, float | None], b: dict[str, float | None]) -> dict[str, Any]:
    """a - b with the half-width of its 95 % interval (independent groups of users: the half-widths add
    in quadrature) and whether the interval excludes 0."""
    if a["mean"] is None or b["mean"] is None or a["ci95"] is None or b["ci95"] is None:
        return {"diff": None, "ci95": None, "significant": None}
    diff, half = a["mean"] - b["mean"], math.hypot(a["ci95"], b["ci95"])
    return {"diff": diff, "ci95": half, "significant": abs(diff) > half}


COMPARED = ("watch_time_ms", "completion_rate", "like_rate", "taste_lift")
SERVED_DEFAULT = "hybrid"


def compare(per_strategy: dict[str, dict[str, Any]], reference: str = SERVED_DEFAULT) -> dict[str, Any]:
    """Each other bucket against the served default: {strategy: {metric: reference - strategy}}."""
    if reference not in per_strategy:
        return {}
    ref = per_strategy[reference]
    return {
        name: {m: difference(ref[m], row[m]) for m in COMPARED}
        for name, row in per_strategy.items()
        if name != reference
    }


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


async def wait_served(
    session: Any, api: str, version: str, users: list[str], timeout_s: float = 60.0
) -> None:
    """Until an answer that uses ALS names the new version (serving polls for it every second)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for user in users[:20]:
            async with session.get(
                f"{api}/recommendations/{user}", params={"k": 1, "preview": "true"}
            ) as resp:
                if resp.status == 200 and (await resp.json()).get("model_version") == version:
                    return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the API at {api} did not serve model {version} within {timeout_s:.0f} s")


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
    scrolling = True
    for item in body.get("items", []):
        video = int(item["video_id"].removeprefix("v"))
        if scrolling:
            evs, imp = react(world, rng, user, video, now_ms(), completion_ratio, base)
            scrolling = rng.random() >= config.scroll_stop
        else:  # shown below where the user stopped: an impression and nothing else
            evs = []
            imp = Impression(
                world.user_id(user),
                world.video_id(video),
                UNLABELLED,
                world.taste(user, video),
                base,
                0,
                int(world.duration_ms[video]),
                False,
                False,
            )
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
        model = None
        if config.train:
            log("[closed-loop] training an ALS model from the log ...")
            model = await asyncio.to_thread(train_model, settings, config.train_trials)
            log(
                f"[closed-loop] model {model['version']}: activated={model['activated']} ({model['gate']['reason']})"
            )
            if model["activated"]:
                await wait_served(session, api, model["version"], [world.user_id(u) for u in users])
        limit = asyncio.Semaphore(config.concurrency)

        async def one(u: int) -> tuple[list[Interaction], list[Impression]]:
            async with limit:
                return await _serve_user(
                    session, api, world, u, config, rng, settings.completion_ratio, exposure
                )

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
        "model": model,
        "strategies": per_strategy,
        "versus_" + SERVED_DEFAULT: compare(per_strategy),
    }
    await save(settings, summary)
    # Which strategy served each user (not stored: the documents hold the figures).
    summary["assignments"] = {i.user: i.strategy for i in impressions}
    return summary


async def save(settings: Settings, summary: dict[str, Any]) -> None:
    """One document per (run, strategy) in MongoDB's `closed_loop` collection."""
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
