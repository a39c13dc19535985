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
"""Given a batch of user indices, the (batch, n_items) score matrix."""


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k highest scores, best first (ties by index, deterministic)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


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
        scores = np.array(score_fn(users[start:stop]), dtype=np.float32, copy=True)
        rows = np.repeat(np.arange(stop - start), [len(s) for s in seen[start:stop]])
        cols = np.fromiter((i for s in seen[start:stop] for i in s), dtype=np.int64, count=len(rows))
        scores[rows, cols] = -np.inf
        best = top_k(scores, k)
        for row, ranked in enumerate(best):
            rel = relevant[start + row]
            hits = np.isin(ranked, rel)
            n_rel = len(rel)
            ideal = discounts[: min(n_rel, k)].sum()
            n_hits = hits.sum()
            totals[0] += (discounts[: len(hits)] * hits).sum() / ideal
            totals[1] += n_hits / n_rel
            totals[2] += n_hits / k
            precision_at_hits = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
            totals[3] += precision_at_hits.sum() / min(n_rel, k)
    n = max(len(users), 1)
    names = ("ndcg", "recall", "precision", "map")
    return {f"{name}@{k}": round(float(total / n), 6) for name, total in zip(names, totals, strict=True)}


def factor_scores(user_factors: np.ndarray, item_factors: np.ndarray) -> ScoreFn:
    items_t = np.ascontiguousarray(item_factors.T)
    return lambda users: user_factors[users] @ items_t


def popularity_scores(popularity: np.ndarray) -> ScoreFn:
    return lambda users: np.broadcast_to(popularity.astype(np.float32), (len(users), len(popularity)))


def sample_users(n: int, max_users: int, seed: int) -> np.ndarray:
    """Row indices of at most `max_users` of `n` holdout users (fixed seed: same sample every run)."""
    if n <= max_users:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_users, replace=False))
