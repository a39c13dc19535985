"""Serving: blend item-CF, ALS, trending and fresh candidates into one list with reasons.

Reads only what the agents materialise in Redis, so any web process gives the same answer.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from recstream import scoring
from recstream.settings import Settings
from recstream.stores import Stores

# (user_id, recent history) -> ({video: score}, model_version) ; None when no model is active.
AlsScorer = Callable[[str, list], Awaitable[tuple[Mapping[str, float], str] | None]]

CANDIDATES_PER_SOURCE = 200
FILL_WEIGHT = 1e-3  # a single-source strategy still fills a short list with trending, ranked below it


def strategy_for(user_id: str, strategies: list[str]) -> str:
    """The A/B bucket of a user: a stable hash of the id (the same on every process and every run)."""
    if len(strategies) == 1:
        return strategies[0]
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return strategies[int.from_bytes(digest, "big") % len(strategies)]


def source_weights(strategy: str, settings: Settings) -> dict[str, float]:
    """Blend weights per source for a strategy: `hybrid` is the full blend, the rest one source each."""
    if strategy == "hybrid":
        return {"itemcf": settings.blend_itemcf, "als": settings.blend_als,
                "trending": settings.blend_trending, "fresh": settings.blend_fresh}
    if strategy == "trending":
        return {"trending": 1.0}
    return {strategy: 1.0, "trending": FILL_WEIGHT}


async def trending_scores(stores: Stores, k: int, half_life_s: float) -> dict[str, float]:
    now = int(time.time() * 1000)
    return {v: scoring.trend_score_now(rank, now, half_life_s) for v, rank in await stores.top_trending(k)}


async def recommend(stores: Stores, settings: Settings, user_id: str, k: int,
                    als: AlsScorer | None = None, strategy: str | None = None) -> dict[str, Any]:
    strategy = strategy or strategy_for(user_id, settings.strategies)
    history, seen = await stores.user_state(user_id)
    if strategy == "random":
        return await _random(stores, settings, user_id, k, seen)
    weights = source_weights(strategy, settings)
    positive = [e for e in history if e[2] > 0][: settings.covisit_lookback]
    neighbours = await stores.neighbours_of([e[0] for e in positive], CANDIDATES_PER_SOURCE)
    itemcf = scoring.itemcf_scores(positive, neighbours, settings.covisit_recency, settings.covisit_lookback)

    pool = k + len(seen) + 50  # enough that dropping seen videos still leaves k
    trending = await trending_scores(stores, min(pool, 1000), settings.trending_half_life_s)
    now = int(time.time() * 1000)
    fresh_raw = await stores.fresh_videos(now - settings.fresh_window_s * 1000, min(pool, 1000))
    # Newer is better, linearly over the freshness window.
    fresh = {v: max(1e-3, 1 - (now - created) / (settings.fresh_window_s * 1000)) for v, created in fresh_raw}

    model_version = None
    als_scores: Mapping[str, float] = {}
    if als is not None and weights.get("als"):
        result = await als(user_id, history)
        if result is not None:
            als_scores, model_version = result

    candidates = scoring.blend([
        (weights.get("itemcf", 0.0), {v: s for v, (s, _src) in itemcf.items()},
         {v: f"because you watched {src}" for v, (_s, src) in itemcf.items()}),
        (weights.get("als", 0.0), als_scores, "als"),
        (weights.get("trending", 0.0), trending, "trending"),
        (weights.get("fresh", 0.0), fresh, "new"),
    ])
    creators = await stores.creators_of(list(candidates))
    picked = scoring.select(candidates.values(), k, seen, creators, settings.max_per_creator)
    return {
        "user_id": user_id,
        "items": [{"video_id": c.video_id, "score": round(c.score, 6), "reasons": c.reasons} for c in picked],
        "model_version": model_version,
        "strategy": strategy,
    }


async def _random(stores: Stores, settings: Settings, user_id: str, k: int, seen: set[str]) -> dict[str, Any]:
    """The A/B baseline: unseen videos uniformly at random from the catalog."""
    pool = await stores.random_videos(k + len(seen) + 20)
    picked = [v for v in dict.fromkeys(pool) if v not in seen]
    random.shuffle(picked)
    return {"user_id": user_id, "items": [{"video_id": v, "score": 0.0, "reasons": ["random"]} for v in picked[:k]],
            "model_version": None, "strategy": "random"}
