"""Top-k ranking metrics per user, their means with 95 % confidence intervals, catalogue coverage.

Binary relevance; for a user with relevant set R and ranked list L (best first):

- ndcg@k = sum_{i <= k, L_i in R} 1/log2(i + 1)  /  sum_{i <= min(|R|, k)} 1/log2(i + 1)
- hr@k = 1 if any of L_1..L_k is in R;  recall@k = hits@k / |R|;  precision@k = hits@k / k
- map = sum over hits at ranks i <= 10 of precision@i, divided by |R|: Microsoft Recommenders' `map`
  (its benchmark's MAP column), which divides by all relevant items, not min(|R|, k)

(The discount's base cancels in the ratio, so recommenders' natural-log NDCG is the same number.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

METRICS = ("ndcg@10", "ndcg@20", "hr@10", "hr@20", "recall@10", "precision@10", "map")
K_MAX = 20
MAP_K = 10


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k highest scores, best first; ties go to the lower index, so the
    ranking does not depend on the platform's partition algorithm."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def per_user(top: np.ndarray, relevant: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Each metric for each user (row of `top`: that user's ranked item indices, at least K_MAX)."""
    n = len(relevant)
    hits = np.zeros((n, K_MAX), dtype=bool)
    n_rel = np.zeros(n)
    for u, rel in enumerate(relevant):
        hits[u] = np.isin(top[u, :K_MAX], rel)
        n_rel[u] = len(rel)
    discount = 1.0 / np.log2(np.arange(2, K_MAX + 2))
    ideal = np.cumsum(discount)
    out: dict[str, np.ndarray] = {}
    for k in (10, 20):
        dcg = (hits[:, :k] * discount[:k]).sum(1)
        out[f"ndcg@{k}"] = dcg / ideal[np.minimum(n_rel, k).astype(int) - 1]
        out[f"hr@{k}"] = hits[:, :k].any(1).astype(float)
    hits10 = hits[:, :10]
    out["recall@10"] = hits10.sum(1) / n_rel
    out["precision@10"] = hits10.sum(1) / 10
    precision_at = np.cumsum(hits[:, :MAP_K], axis=1) / np.arange(1, MAP_K + 1)
    out["map"] = (precision_at * hits[:, :MAP_K]).sum(1) / n_rel
    return {name: out[name] for name in METRICS}


def debiased_ndcg(
    top: np.ndarray, relevant: Sequence[np.ndarray], item_rows: np.ndarray, k: int = 10, power: float = 1.0
) -> float:
    """NDCG@k with every relevant item weighted by its inverse exposure propensity, `(training rows + 1)
    ** -power` (the propensity taken proportional to popularity), and users pooled self-normalised
    (SNIPS: each user's NDCG with those weighted gains, averaged with the user's mean item weight as its
    weight). Logged implicit feedback is exposure-biased:
    popular items were shown more, so they are engaged with more whatever the taste; this estimates the
    ranking's quality as if every item had been equally exposed (Yang et al., "Unbiased offline
    recommender evaluation for missing-not-at-random implicit feedback", RecSys 2018), which is what
    someone reacting to their taste alone rewards. `power` 0 is plain NDCG@k (users weighted equally)."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    total = weight_sum = 0.0
    for u, rel in enumerate(relevant):
        if not len(rel):
            continue
        w = (item_rows[rel] + 1.0) ** -power
        gain = dict(zip(rel.tolist(), w.tolist(), strict=True))
        dcg = sum(gain.get(int(v), 0.0) * discount[r] for r, v in enumerate(top[u, :k]))
        ideal = float(np.sort(w)[::-1][:k] @ discount[: min(len(w), k)])
        user_weight = float(w.mean())
        total += user_weight * dcg / ideal
        weight_sum += user_weight
    return total / weight_sum if weight_sum else 0.0


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95 % normal-approximation confidence interval; nan where undefined
    (no value; one value has no interval). The closed loop's per-user figures use it too
    (`recstream.producers.closed_loop_stats`)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    half = 1.96 * float(np.std(values, ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return float(np.mean(values)), half


def coverage(top: np.ndarray, n_candidates: int, k: int = 10) -> float:
    """Share of the candidate catalogue that appears in at least one user's top k."""
    shown = np.unique(top[:, :k])
    return int((shown >= 0).sum()) / n_candidates if n_candidates else 0.0
