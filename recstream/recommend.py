"""Serving: blend item-CF, ALS, trending and fresh candidates into one list with reasons.

Reads only what the agents materialise in Redis, so any web process gives the same answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from recstream import scoring
from recstream.settings import Settings
from recstream.stores import Stores

# (user_id, recent history) -> ({video: score}, model_version) ; None when no model is active.
AlsScorer = Callable[[str, list], Awaitable[tuple[Mapping[str, float], str] | None]]

CANDIDATES_PER_SOURCE = 200


async def trending_scores(stores: Stores, k: int, half_life_s: float) -> dict[str, float]:
    now = int(time.time() * 1000)
    return {v: scoring.trend_score_now(rank, now, half_life_s) for v, rank in await stores.top_trending(k)}


async def recommend(stores: Stores, settings: Settings, user_id: str, k: int,
                    als: AlsScorer | None = None) -> dict[str, Any]:
    history, seen = await stores.user_state(user_id)
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
    if als is not None:
        result = await als(user_id, history)
        if result is not None:
            als_scores, model_version = result

    candidates = scoring.blend([
        (settings.blend_itemcf, {v: s for v, (s, _src) in itemcf.items()},
         {v: f"because you watched {src}" for v, (_s, src) in itemcf.items()}),
        (settings.blend_als, als_scores, "als"),
        (settings.blend_trending, trending, "trending"),
        (settings.blend_fresh, fresh, "new"),
    ])
    creators = await stores.creators_of(list(candidates))
    picked = scoring.select(candidates.values(), k, seen, creators, settings.max_per_creator)
    return {
        "user_id": user_id,
        "items": [{"video_id": c.video_id, "score": round(c.score, 6), "reasons": c.reasons} for c in picked],
        "model_version": model_version,
    }
