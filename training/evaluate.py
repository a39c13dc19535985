"""Evaluate: top-k ranking metrics from factors with numpy on the driver (no recommendForAllUsers).

For each holdout user, every video is ranked except those seen in training; the relevant set is the
user's held-out positives. Metrics at k, averaged over users:

- ndcg@k: binary-relevance DCG / ideal DCG (ideal = min(|relevant|, k) hits at the top);
- recall@k: hits / |relevant|;  precision@k: hits / k;
- map@k: sum of precision@i at each hit position i <= k, divided by min(|relevant|, k).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""Given a batch of user indices, a new (batch, n_items) score matrix (the caller may modify it)."""


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k highest scores, best first (ties by index, deterministic)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(scores, -k, axis=1)[:, -k:]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _rows(lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged lists -> (row index, value) coordinate arrays."""
    rows = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
    cols = np.fromiter((i for x in lists for i in x), dtype=np.int64, count=len(rows))
    return rows, cols


def ranking_metrics(
    score_fn: ScoreFn,
    users: np.ndarray,
    seen: Sequence[Sequence[int]],
    relevant: Sequence[Sequence[int]],
    k: int = 10,
    batch: int = 2048,
) -> dict[str, float]:
    """Mean ndcg/recall/precision/map at k over `users` (row i: seen[i] masked, relevant[i] sought)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    totals = np.zeros(4)
    for start in range(0, len(users), batch):
        stop = min(start + batch, len(users))
        scores = score_fn(users[start:stop])  # a fresh (batch, n_items) array: masked in place
        scores[_rows(seen[start:stop])] = -np.inf
        best = top_k(scores, k)
        is_relevant = np.zeros(scores.shape, dtype=bool)
        is_relevant[_rows(relevant[start:stop])] = True
        hits = np.take_along_axis(is_relevant, best, axis=1)  # (batch, k), best first
        kk = hits.shape[1]
        n_rel = is_relevant.sum(axis=1)
        n_hits = hits.sum(axis=1)
        cut = np.minimum(n_rel, k)
        ideal = np.cumsum(discounts)[cut - 1]
        totals[0] += (hits @ discounts[:kk] / ideal).sum()
        totals[1] += (n_hits / n_rel).sum()
        totals[2] += (n_hits / k).sum()
        precision_at = np.cumsum(hits, axis=1) / np.arange(1, kk + 1)
        totals[3] += ((precision_at * hits).sum(axis=1) / cut).sum()
    n = max(len(users), 1)
    names = ("ndcg", "recall", "precision", "map")
    return {f"{name}@{k}": round(float(total / n), 6) for name, total in zip(names, totals, strict=True)}


def factor_scores(user_factors: np.ndarray, item_factors: np.ndarray) -> ScoreFn:
    items_t = np.ascontiguousarray(item_factors.T)
    return lambda users: user_factors[users] @ items_t


def popularity_scores(popularity: np.ndarray) -> ScoreFn:
    row = popularity.astype(np.float32)
    return lambda users: np.tile(row, (len(users), 1))
