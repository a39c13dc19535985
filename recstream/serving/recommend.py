"""Serving: blend item-CF, ALS, trending and fresh candidates into one list with reasons.

Everything but the user's own state comes from the process's `ServingState` (refreshed in the
background); the user's history and seen filter are one MGET. Scoring is numpy over the candidates:

- item-CF: the neighbour lists of the user's recent positive videos, each weighted recency**step,
  summed per candidate (the reason: the source that contributed most);
- trending and fresh: the process's pools (their top `serving_pool_size`), blended once per refresh
  (`serving.Base`): the same for everyone, so someone new gets a kept answer;
- ALS: the user's vector (trained, or folded in from the live history) scores the pools, ALS's own
  retrieval set (`serving.Base.factors`: the longest item vectors) and the best item-CF candidates (the "als" strategy: the whole catalog); its top `CANDIDATES_PER_SOURCE` join
  the blend as "als";
- each source max-scaled to 1 and weighted (`source_weights`: the weights the active model was
  published with, tuned by its training round, unless the settings pin them); never a video the user engaged with
  (the exact history plus the seen filter), at most `max_per_creator` per creator, ties by video id.
  The answer merges the user's own candidates with the rest of the pools, both ranked, looking at
  their heads only (`_select`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from recstream.serving import kernels
from recstream.serving.foldin import ModelCache
from recstream.serving.state import ServingState
from recstream.settings import Settings

CANDIDATES_PER_SOURCE = 200
FILL_WEIGHT = 1e-3  # a single-source strategy still fills a short list with trending, ranked below it
EMPTY_I, EMPTY_F = np.empty(0, np.int64), np.empty(0, np.float64)
EMPTY_F32, NO_FACTORS = np.empty(0, np.float32), np.empty((0, 0), np.float32)


def strategy_for(user_id: str, strategies: list[str]) -> str:
    """The A/B bucket of a user: a stable hash of the id (the same on every process and every run)."""
    if len(strategies) == 1:
        return strategies[0]
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return strategies[int.from_bytes(digest, "big") % len(strategies)]


BLENDED = ("itemcf", "als", "trending", "fresh")


def source_weights(
    strategy: str, settings: Settings, published: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Blend weights per source for a strategy: `hybrid` is the full blend, the rest one source each.
    The hybrid's weight of a source is the settings' when set there (pinned by the operator), else the
    one the active model was published with (`published`), else the settings' default."""
    if strategy == "hybrid":
        pinned = settings.model_fields_set
        weights = {
            source: float(published[source])
            if published and source in published and f"blend_{source}" not in pinned
            else getattr(settings, f"blend_{source}")
            for source in BLENDED
        }
        return {**weights, "trending": filled(weights["trending"])}
    if strategy == "trending":
        return {"trending": 1.0}
    return {strategy: 1.0, "trending": FILL_WEIGHT}


def filled(trending: float) -> float:
    """The hybrid's trending weight as served: at least `FILL_WEIGHT`, so a list always fills up. A
    training round may choose 0 for trending (fresh is often pinned to 0): with both at 0 a user the
    model does not know yet got an empty list, and kept getting it, having nothing to react to (the
    closed loop's hybrid bucket lost a third of its users that way)."""
    return max(trending, FILL_WEIGHT)


_WEIGHTS: dict[tuple[str, int, int], tuple[Settings, Mapping[str, float] | None, dict[str, float]]] = {}


def _weights(strategy: str, settings: Settings, published: Mapping[str, float] | None) -> dict[str, float]:
    """`source_weights`, kept per (strategy, settings, published weights): the same for every request
    until the settings or the model change (the entry holds both, so their ids are not reused)."""
    key = (strategy, id(settings), id(published))
    entry = _WEIGHTS.get(key)
    if entry is None or entry[0] is not settings or entry[1] is not published:
        if len(_WEIGHTS) > 64:
            _WEIGHTS.clear()
        entry = _WEIGHTS[key] = (settings, published, source_weights(strategy, settings, published))
    return entry[2]


def seen_mask(state: ServingState, candidates: np.ndarray, excluded: np.ndarray, seen: bytes) -> np.ndarray:
    """True where the user engaged with the candidate (in `excluded`, or in the seen filter) or it is
    taken down."""
    return kernels.seen_among(
        candidates,
        excluded,
        state.removed,
        state.any_removed,
        np.frombuffer(seen, dtype=np.uint8),
        state.bloom_byte,
        state.bloom_mask,
        state.flags,
    )


def recommend(
    state: ServingState,
    settings: Settings,
    user_id: str,
    k: int,
    history: list,
    seen: bytes,
    models: ModelCache | None = None,
    strategy: str | None = None,
    overexposed: Sequence[str] = (),
) -> dict[str, Any]:
    """The answer of `GET /recommendations/{user_id}` from the process's state and the user's own:
    `overexposed`, videos shown to the user too often without engagement (`agents.impressions`), are
    left out like the ones they engaged with."""
    strategy = strategy or strategy_for(user_id, settings.strategies)
    state.rank_ids()  # videos interned outside a refresh (tools, tests); a check when there are none
    get = state.index.get
    # Per history entry its video number (-1: unknown here) and weight, newest first.
    entries = np.array([get(e[0], -1) for e in history], dtype=np.int64)
    history_idx = entries[entries >= 0] if len(entries) else EMPTY_I
    excluded = history_idx
    if overexposed:
        hidden = np.array([i for v in overexposed if (i := get(v)) is not None], dtype=np.int64)
        excluded = np.concatenate((history_idx, hidden))
    if strategy == "random":
        return _random(state, user_id, k, excluded, seen)
    model = models.model if models is not None else None
    weights = _weights(strategy, settings, model.blend if model is not None else None)
    # Trending and fresh are the same for everyone until the next refresh: blended and sorted once
    # (`ServingState.base`). Per request only the user's own sources are scored: item-CF and ALS.
    base = state.base(weights.get("trending", 0.0), weights.get("fresh", 0.0))
    model = model if weights.get("als") else None
    anonymous = (
        not history and not seen and not overexposed and (model is None or user_id not in model.user_index)
    )
    if anonymous and (items := base.cold.get((k, settings.max_per_creator))) is not None:
        # Nothing of the user's own: the answer is the pools' alone, the same for everyone until the
        # next refresh (a third of the requests on a platform with many new users).
        return {
            "user_id": user_id,
            "items": items,
            "model_version": model.version if model else None,
            "strategy": strategy,
        }
    w_itemcf, w_als = weights.get("itemcf", 0.0), weights.get("als", 0.0)
    vector, model_version = EMPTY_F32, None
    pool, pool_factors, pool_scores = EMPTY_I, NO_FACTORS, EMPTY_F32
    extra_ok, model_rows, item_factors = state.nowhere, EMPTY_I, NO_FACTORS
    if model is not None:
        model_version = model.version
        vector = models.user_vector(user_id, history)
        if vector is None:
            vector = EMPTY_F32
        elif strategy == "als":  # the whole catalog: one BLAS product
            pool, pool_scores = _catalog_scores(state, model, vector)
        else:  # the pools (their rows gathered once per refresh) and the best item-CF candidates
            pool, pool_factors = base.factors(state, model)
            extra_ok, model_rows, item_factors = (
                base.extra_ok(state, model),
                state.model_rows(model),
                model.item_factors,
            )
    picked, scores, sources, reasons = kernels.rank(
        k,
        settings.max_per_creator,
        entries,
        np.array([e[2] for e in history], dtype=np.float64) if w_itemcf and len(entries) else EMPTY_F,
        settings.covisit_recency,
        settings.covisit_lookback,
        w_itemcf,
        w_als,
        pool,
        pool_factors,
        pool_scores,
        extra_ok,
        model_rows,
        item_factors,
        vector,
        CANDIDATES_PER_SOURCE,
        base.score,
        base.order,
        excluded,
        history_idx,
        state.removed,
        state.any_removed,
        np.frombuffer(seen, dtype=np.uint8),
        state.bloom_byte,
        state.bloom_mask,
        state.creator,
        state.id_rank,
        state.in_trending if weights.get("trending") else state.nowhere,
        state.in_fresh if weights.get("fresh") else state.nowhere,
        state.nbr_start,
        state.nbr_len,
        state.nbr_to,
        state.nbr_w,
        state.flags,
        state.acc,
        state.best,
        state.best_src,
        state.per_creator,
    )
    ids = state.ids
    items = []
    # Rounded as numpy does (rint(x * 1e6) / 1e6): Python's round() would cost ~0.5 µs per score.
    for i, score, source, bits in zip(
        picked.tolist(), scores.round(6).tolist(), sources.tolist(), reasons.tolist(), strict=True
    ):
        why = [f"because you watched {history[source][0]}"] if source >= 0 else []
        if bits:
            why += REASONS[bits]
        items.append({"video_id": ids[i], "score": score, "reasons": why})
    if anonymous:
        base.cold[(k, settings.max_per_creator)] = items
    return {"user_id": user_id, "items": items, "model_version": model_version, "strategy": strategy}


REASONS = [
    [
        name
        for bit, name in (
            (kernels.REASON_ALS, "als"),
            (kernels.REASON_TRENDING, "trending"),
            (kernels.REASON_FRESH, "new"),
        )
        if bits & bit
    ]
    for bits in range(8)
]


def _catalog_scores(state: ServingState, model: Any, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The `als` arm's candidates: every catalog video the model knows, and its score (one BLAS product;
    serving processes run BLAS on one thread, `ServingState.start`: a pool woken per product cost ~1 ms
    on a busy 2-core host)."""
    cand = state.catalog_ids()
    rows = state.model_rows(model).take(cand)
    known = rows >= 0
    return cand[known], model.item_factors.take(rows[known], axis=0) @ vector


def _random(
    state: ServingState, user_id: str, k: int, history_idx: np.ndarray, seen: bytes
) -> dict[str, Any]:
    """The A/B baseline: unseen catalog videos uniformly at random."""
    catalog = state.catalog_ids()
    pool = catalog if len(catalog) <= 4 * k + 64 else np.array(random.sample(catalog.tolist(), 4 * k + 64))
    pool = pool[~seen_mask(state, pool, history_idx, seen)].tolist()
    random.shuffle(pool)
    return {
        "user_id": user_id,
        "items": [{"video_id": state.ids[i], "score": 0.0, "reasons": ["random"]} for i in pool[:k]],
        "model_version": None,
        "strategy": "random",
    }
