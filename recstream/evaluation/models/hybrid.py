"""The served blend, offline: item-CF + ALS + trending candidates -> scoring.blend -> scoring.select.

Each source is built as `recstream.serving.recommend.recommend` builds it: item-CF from the user's recent
positives; ALS's best CANDIDATES_PER_SOURCE unseen videos; the trending list's top
k + |seen| + 50. The fresh source needs publication times that offline datasets lack: it is left out
(its weight has nothing to act on).

`hybrid` is the served default: its weights are chosen on validation by the rule each training round
uses for the weights it publishes with the model (`runner.blend_rule`: of the pairs in `JOINT_VALUES`
beside ALS at least as accurate as the best single source, the one with the most popularity-debiased
NDCG@10), except those an operator pins in the settings. `hybrid-defaults` blends with the built-in
weights, untuned.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recstream import scoring
from recstream.evaluation.metrics import K_MAX
from recstream.evaluation.models import Context, DenseScores, FactorScores, GridSize
from recstream.evaluation.models.itemcf import FittedItemCF
from recstream.serving.recommend import CANDIDATES_PER_SOURCE, filled

COMPONENTS = ("itemcf", "spark-als", "trending")
WEIGHTS = {"w_itemcf": "itemcf", "w_als": "als", "w_trending": "trending"}
"""Offline weight name -> the source it weighs (the key of the weights published with a model)."""
WEIGHT_VALUES = [0.0, 0.1, 0.3, 0.5, 1.0, 2.0, 4.0]
"""The weights tried per source. Sources are max-scaled before weighting, so only ratios matter."""
JOINT_VALUES = {"w_itemcf": [0.0, 0.1, 0.25, 0.5, 1.0, 2.0], "w_trending": [0.0, 0.1, 0.3, 1.0]}
"""The training round's blend search (`Hybrid.joint_axes`): every pair of these beside ALS at its weight
(1 unless pinned: only ratios matter), so the outcome does not depend on the order axes are walked."""


def settings_weights(ctx: Context) -> dict[str, float]:
    """The settings' weights (built-in defaults unless set) under their offline names."""
    s = ctx.settings
    return {"w_itemcf": s.blend_itemcf, "w_als": s.blend_als, "w_trending": s.blend_trending}


def pinned(ctx: Context) -> set[str]:
    """Offline names of the weights an operator set in the settings: never tuned."""
    return {w for w, source in WEIGHTS.items() if f"blend_{source}" in ctx.settings.model_fields_set}


def published(weights: dict[str, float]) -> dict[str, float]:
    """Offline weights -> the {source: weight} a model publishes."""
    return {WEIGHTS[w]: float(v) for w, v in weights.items()}


@dataclass
class Sources:
    """Each user's candidate lists, as serving fetches them, built once and shared by every weighting
    tried (the lists do not depend on the weights; only the blend does)."""

    itemcf: FittedItemCF
    als: FactorScores
    trending: DenseScores
    seen: dict[int, np.ndarray]  # training items per user (serving's seen set)
    _cache: dict[int, tuple[dict[str, float], dict[str, float], dict[str, float], set[str]]] = field(
        default_factory=dict, repr=False
    )

    def of(
        self, users: np.ndarray
    ) -> list[tuple[dict[str, float], dict[str, float], dict[str, float], set[str]]]:
        missing = np.asarray([u for u in users if int(u) not in self._cache], dtype=np.int64)
        if len(missing):
            ids = self.itemcf.ds.item_ids
            trend_order = np.argsort(-self.trending.vector, kind="stable")
            als_all = self.als.scores(missing)
            for row, u in enumerate(missing.tolist()):
                seen = self.seen.get(u, np.zeros(0, dtype=np.int64))
                itemcf = {v: s for v, (s, _src) in self.itemcf.candidates(u).items()}
                als = als_all[row].astype(np.float64, copy=True)
                als[seen] = -np.inf
                top = np.argsort(-als, kind="stable")[:CANDIDATES_PER_SOURCE]
                als_scores = {ids[i]: float(als[i]) for i in top if np.isfinite(als[i])}
                pool = trend_order[: min(K_MAX + len(seen) + 50, 1000)]
                vector = self.trending.vector
                trending = {ids[i]: float(vector[i]) for i in pool if vector[i] > 0}
                self._cache[u] = (itemcf, als_scores, trending, {ids[i] for i in seen})
        return [self._cache[int(u)] for u in users]


@dataclass
class FittedHybrid:
    sources: Sources
    weights: dict[str, float]
    max_per_creator: int

    def scores(self, users: np.ndarray) -> np.ndarray:
        ds = self.sources.itemcf.ds
        index = {v: i for i, v in enumerate(ds.item_ids)}
        out = np.full((len(users), ds.n_items), -np.inf)
        w = self.weights
        for row, (itemcf, als, trending, seen) in enumerate(self.sources.of(users)):
            candidates = scoring.blend(
                [
                    (w["w_itemcf"], itemcf, "itemcf"),
                    (w["w_als"], als, "als"),
                    (filled(w["w_trending"]), trending, "trending"),  # as served
                ]
            )
            # Offline datasets have no creators: the creator cap has nothing to act on.
            picked = scoring.select(candidates.values(), K_MAX, seen, {}, self.max_per_creator)
            for rank, c in enumerate(picked):  # the served order, as descending scores
                out[row, index[c.video_id]] = K_MAX - rank
        return out


class Hybrid:
    """Not fitted from rows: assembled from the tuned components (see runner)."""

    NAME = "hybrid"
    DEFAULTS = "hybrid-defaults"

    @staticmethod
    def axes(size: GridSize, ctx: Context) -> dict[str, list[Any]]:
        values = [0.0, 1.0, 3.0] if size == "small" else WEIGHT_VALUES
        fixed = pinned(ctx)
        return {w: values for w in ("w_als", "w_itemcf", "w_trending") if w not in fixed}

    @staticmethod
    def joint_axes(ctx: Context, size: GridSize = "train") -> dict[Any, list[Any]]:
        """One joint axis over the weights not pinned in `JOINT_VALUES` (every combination tried); the
        "small" grid (tests, quick looks) tries every other value."""
        free = tuple(w for w in JOINT_VALUES if w not in pinned(ctx))
        values = {w: v[::2] if size == "small" else v for w, v in JOINT_VALUES.items()}
        return {free: list(itertools.product(*(values[w] for w in free)))} if free else {}

    @staticmethod
    def sources(components: dict[str, Any], seen: dict[int, np.ndarray]) -> Sources:
        return Sources(components["itemcf"], components["spark-als"], components["trending"], seen)

    @staticmethod
    def assemble(sources: Sources, weights: dict[str, float], ctx: Context) -> FittedHybrid:
        return FittedHybrid(sources, weights, ctx.settings.max_per_creator)
