"""Serving: blend item-CF, ALS, trending and fresh candidates into one list with reasons.

Everything but the user's own state comes from the process's `ServingState` (refreshed in the
background); the user's history and seen filter are one MGET. Scoring is numpy over the candidates:

- item-CF: the neighbour lists of the user's recent positive videos, each weighted recency**step,
  summed per candidate (the reason: the source that contributed most);
- trending and fresh: the process's pools (their top `serving_pool_size`), blended once per refresh
  (`serving.Base`): the same for everyone, so someone new gets a kept answer;
- ALS: the user's vector (trained, or folded in from the live history) scores the pools and the best
  item-CF candidates (the "als" strategy: the whole catalog); its top `CANDIDATES_PER_SOURCE` join
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

from recstream.serving.foldin import ModelCache
from recstream.serving.state import Base, ServingState
from recstream.settings import Settings

CANDIDATES_PER_SOURCE = 200
FILL_WEIGHT = 1e-3  # a single-source strategy still fills a short list with trending, ranked below it
EMPTY_I, EMPTY_F = np.empty(0, np.int64), np.empty(0, np.float64)


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
        return {
            source: float(published[source])
            if published and source in published and f"blend_{source}" not in pinned
            else getattr(settings, f"blend_{source}")
            for source in BLENDED
        }
    if strategy == "trending":
        return {"trending": 1.0}
    return {strategy: 1.0, "trending": FILL_WEIGHT}


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


class ItemCF:
    """The item-CF source of one request: candidates with summed scores, and what the reasons need."""

    def __init__(
        self, state: ServingState, history: Sequence[Sequence[Any]], recency: float, max_sources: int
    ) -> None:
        idx, val, positions, factors = [], [], [], []
        step = 0
        nbrs, index = state.nbrs, state.index
        for position, (video, _ts, weight) in enumerate(history):
            if weight <= 0:
                continue
            lists = nbrs.get(index.get(video, -1))
            if lists is not None:
                idx.append(lists[0])
                val.append(lists[1])
                positions.append(position)
                factors.append(recency**step)
            step += 1
            if step >= max_sources:
                break
        if not idx:
            self.idx, self.scores, self._all = EMPTY_I, EMPTY_F, None
            return
        lengths = np.array([len(a) for a in idx])
        all_idx = np.concatenate(idx)
        all_val = np.concatenate(val) * np.repeat(np.array(factors), lengths)
        sums = state.scratch
        np.add.at(sums, all_idx, all_val)
        self.idx = state.unique(all_idx)
        self.scores = sums.take(self.idx)
        sums[self.idx] = 0.0
        self._all = (all_idx, all_val, positions, np.cumsum(lengths))

    def best(self, n: int) -> np.ndarray:
        """The n best candidates (all of them when there are no more)."""
        if len(self.idx) <= n:
            return self.idx
        return self.idx.take((-self.scores).argpartition(n - 1)[:n])

    def best_sources(self, state: ServingState, picked: np.ndarray) -> list[int]:
        """Per picked video, the history position that contributed most to it (-1: none). On a tie the
        more recent source wins (the first in list order)."""
        if self._all is None or not len(picked):
            return [-1] * len(picked)
        idx, val, positions, ends = self._all
        marks = state.marks
        marks[picked] = True
        entries = np.flatnonzero(marks.take(idx))  # only the entries of picked videos, in list order
        marks[picked] = False
        best: dict[int, tuple[float, int]] = {}
        which = np.searchsorted(ends, entries, side="right").tolist()  # the list of each entry
        for video, value, w in zip(
            idx.take(entries).tolist(), val.take(entries).tolist(), which, strict=True
        ):
            if value > best.get(video, (-1.0, 0))[0]:  # strictly: on a tie the earlier (more recent) list
                best[video] = (value, w)
        return [positions[best[i][1]] if i in best else -1 for i in picked.tolist()]


def seen_mask(
    state: ServingState, candidates: np.ndarray, history_idx: np.ndarray, seen: bytes
) -> np.ndarray:
    """True where the user engaged with the candidate: in the history, or in the seen filter."""
    marks = state.marks
    marks[history_idx] = True
    mask = marks.take(candidates)
    marks[history_idx] = False
    if state.any_removed:  # taken-down videos count as seen by everyone
        mask |= state.removed.take(candidates)
    if seen:
        size = state.settings.seen_bloom_bits // 8
        if len(seen) < size:  # SETBIT grows the string only as far as the highest bit set
            seen = bytes(seen).ljust(size, b"\0")
        bits = np.frombuffer(seen, dtype=np.uint8)
        # A candidate is in the filter when every one of its bits is set: its bytes masked by its masks
        # equal its masks, compared 8 at a time as uint64 words (the padding: byte 0, mask 0).
        got = bits.take(state.bloom_byte.take(candidates, axis=0)) & state.bloom_mask.take(candidates, axis=0)
        hits = got.view(np.uint64) == state.bloom_words.take(candidates, axis=0)
        mask |= hits[:, 0] if hits.shape[1] == 1 else hits.all(axis=1)
    return mask


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
    index = state.index
    get = index.get
    history_idx = np.array([i for e in history if (i := get(e[0])) is not None], dtype=np.int64)
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
    acc = state.acc
    parts: list[np.ndarray] = []
    blended: list[np.ndarray] = []  # per part, its weighted scores

    cf = (
        ItemCF(state, history, settings.covisit_recency, settings.covisit_lookback)
        if weights.get("itemcf")
        else None
    )
    if cf is not None and len(cf.idx) and (top := cf.scores.max()) > 0:
        blended.append((weights["itemcf"] / top) * cf.scores)
        parts.append(cf.idx)

    model_version, als_idx = None, EMPTY_I
    if model is not None:
        model_version = model.version
        vector = models.user_vector(user_id, history)
        if vector is not None:
            als_idx, als_scores, als_top = _als(
                state,
                base,
                model,
                vector,
                cf.best(CANDIDATES_PER_SOURCE) if cf is not None else EMPTY_I,
                history_idx,
                whole_catalog=strategy == "als",
            )
            if len(als_idx):
                blended.append((weights["als"] / als_top) * als_scores)
                parts.append(als_idx)

    if not parts:
        dyn, dyn_scores = EMPTY_I, EMPTY_F
    elif len(parts) == 1:  # a source's candidates are distinct already: no sums
        dyn = parts[0]
        dyn_scores = blended[0] + base.score.take(dyn)
    else:  # summed in the scratch accumulator (all zero between requests), in source order
        acc[parts[0]] = blended[0]
        for idx, scores in zip(parts[1:], blended[1:], strict=True):
            acc[idx] += scores
        dyn = state.unique(np.concatenate(parts))
        dyn_scores = acc.take(dyn) + base.score.take(dyn)
        acc[dyn] = 0.0
    picked, picked_scores = _select(state, dyn, dyn_scores, base, k, excluded, seen, settings.max_per_creator)
    n = len(picked)
    chosen = np.array(picked, dtype=np.int64)
    sources = cf.best_sources(state, chosen) if cf is not None else [-1] * n
    in_als = state.member(chosen, als_idx) if len(als_idx) else [False] * n
    in_trending = state.in_trending.take(chosen).tolist() if weights.get("trending") else [False] * n
    in_fresh = state.in_fresh.take(chosen).tolist() if weights.get("fresh") else [False] * n
    ids = state.ids
    items = []
    for i, score, source, als, trending, fresh in zip(
        picked, picked_scores, sources, in_als, in_trending, in_fresh, strict=True
    ):
        reasons = [f"because you watched {history[source][0]}"] if source >= 0 else []
        if als:
            reasons.append("als")
        if trending:
            reasons.append("trending")
        if fresh:
            reasons.append("new")
        items.append({"video_id": ids[i], "score": round(score, 6), "reasons": reasons})
    if anonymous:
        base.cold[(k, settings.max_per_creator)] = items
    return {"user_id": user_id, "items": items, "model_version": model_version, "strategy": strategy}


def _als(
    state: ServingState,
    base: Base,
    model: Any,
    vector: np.ndarray,
    cf_idx: np.ndarray,
    history_idx: np.ndarray,
    whole_catalog: bool,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The model's best `CANDIDATES_PER_SOURCE` among the pools and the best item-CF candidates (the `als`
    arm: the whole catalog), never a video in the history: (videos, scores, the best score), or empty
    when none scores > 0. The item-CF ones are the only factor rows gathered per request, so at most 200: a heavy user's
    ~500 rows read at random from a 100,000-video matrix cost ~50 µs of cache misses."""
    # Serving processes run BLAS on one thread (`ServingState.start`): a pool woken per product cost ~1 ms
    # on a busy 2-core host.
    if whole_catalog:
        cand = state.catalog_ids()
        rows = state.model_rows(model).take(cand)
        known = rows >= 0
        cand, rows = cand[known], rows[known]
        scores = model.item_factors.take(rows, axis=0) @ vector
    else:
        pool, factors = base.factors(state, model)  # the pool's rows, gathered once per refresh
        pooled = factors @ vector
        if len(cf_idx):
            extra = cf_idx[base.extra_ok(state, model).take(cf_idx)]  # not pooled, known to the model
            rows = state.model_rows(model).take(extra)
            cand = np.concatenate((pool, extra))
            scores = np.concatenate((pooled, model.item_factors.take(rows, axis=0) @ vector))
        else:
            cand, scores = pool, pooled
    if len(history_idx) and len(cand):
        fresh = ~state.member_array(cand, history_idx)
        cand, scores = cand[fresh], scores[fresh]
    if len(cand) > CANDIDATES_PER_SOURCE:
        top = (-scores).argpartition(CANDIDATES_PER_SOURCE - 1)[:CANDIDATES_PER_SOURCE]
        cand, scores = cand.take(top), scores.take(top)
    if not len(cand) or (best := scores.max()) <= 0:
        return EMPTY_I, EMPTY_F, 0.0
    return cand, scores.astype(np.float64), float(best)


def _select(
    state: ServingState,
    dyn: np.ndarray,
    dyn_scores: np.ndarray,
    base: Base,
    k: int,
    history_idx: np.ndarray,
    seen: bytes,
    max_per_creator: int,
) -> tuple[list[int], list[float]]:
    """Best first (ties by video id), never seen, at most `max_per_creator` per creator (unknown
    creators uncapped), from two ranked streams: the user's own candidates (`dyn`, with the pools'
    score added) and the rest of the pools, already sorted. Looks at the head of each; widens when
    filters removed so many that an item not looked at could still rank. (videos, their scores)"""
    ids, creator, pool_score = state.ids, state.creator, base.score
    order = base.order
    if len(dyn):
        in_dyn = state.marks
        in_dyn[dyn] = True
        try:
            rest = order[~in_dyn.take(order)]
        finally:
            in_dyn[dyn] = False
    else:
        rest = order
    take = k + 8 + min(len(history_idx), k)
    while True:
        limit = -np.inf  # nothing left out scores above this
        if take < len(dyn):
            top = (-dyn_scores).argpartition(take - 1)[:take]
            top_videos, top_scores = dyn.take(top), dyn_scores.take(top)
            limit = float(top_scores.min())
        else:
            top_videos, top_scores = dyn, dyn_scores
        head = rest[:take]
        if take < len(rest):
            limit = max(limit, float(pool_score[rest[take]]))
        cand = np.concatenate((top_videos, head))
        scores = np.concatenate((top_scores, pool_score.take(head)))
        keep = ~seen_mask(state, cand, history_idx, seen)
        cand, scores = cand[keep], scores[keep]
        ranking = (-scores).argsort(kind="stable")
        cand = cand.take(ranking)
        ranked_scores, ranked, ranked_creators = (
            scores.take(ranking).tolist(),
            cand.tolist(),
            creator.take(cand).tolist(),
        )
        picked: list[int] = []
        picked_scores: list[float] = []
        per_creator: dict[int, int] = {}
        n, start = len(ranked), 0
        while start < n:
            score, end = ranked_scores[start], start + 1
            if score <= limit:  # an item left out could rank here: look further
                break
            if end < n and ranked_scores[end] == score:  # equal scores: by video id
                while end < n and ranked_scores[end] == score:
                    end += 1
                group: Sequence[int] = sorted(range(start, end), key=lambda q: ids[ranked[q]])
            else:
                group = (start,)
            for q in group:
                c = ranked_creators[q]
                if c >= 0:
                    so_far = per_creator.get(c, 0)
                    if so_far >= max_per_creator:
                        continue
                    per_creator[c] = so_far + 1
                picked.append(ranked[q])
                picked_scores.append(score)
                if len(picked) >= k:
                    return picked, picked_scores
            start = end
        if limit == -np.inf:  # nothing was left out: fewer than k is all there is
            return picked, picked_scores
        take *= 4


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
