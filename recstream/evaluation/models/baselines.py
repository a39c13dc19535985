"""Popularity and trending: the non-personalised baselines (trending is what serving blends in)."""

from __future__ import annotations

from typing import Any

import numpy as np

from recstream import scoring
from recstream.evaluation.data import Dataset
from recstream.evaluation.models import Context, DenseScores, GridSize

DAY_S = 86_400.0


def time_order(ds: Dataset, rows: np.ndarray) -> np.ndarray:
    """Rows by time; equal times keep file order (the order a replay publishes them)."""
    return rows[np.lexsort((rows, ds.ts[rows]))]


def engagement_params(ctx: Context) -> scoring.EngagementParams:
    return scoring.EngagementParams(ctx.settings.completion_ratio, ctx.settings.fast_skip_ms)


class Popularity:
    NAME = "popularity"

    @staticmethod
    def start(ctx: Context) -> dict[str, Any]:
        return {}

    @staticmethod
    def axes(size: GridSize, ctx: Context) -> dict[str, list[Any]]:
        return {}

    @staticmethod
    def fit(ds: Dataset, rows: np.ndarray, params: dict[str, Any], ctx: Context) -> DenseScores:
        """Distinct users with a positive row per item."""
        positive = rows[ds.weight[rows] > 0]
        pairs = np.unique(ds.user[positive].astype(np.int64) * ds.n_items + ds.item[positive])
        return DenseScores(np.bincount(pairs % ds.n_items, minlength=ds.n_items).astype(np.float64))


class Trending:
    """The engagement agent's gravity-decayed trending score (scoring.trending_weight + add_trend),
    replayed over the training events and read at the time of the newest one."""

    NAME = "trending"

    @staticmethod
    def start(ctx: Context) -> dict[str, Any]:
        return {"half_life_s": ctx.settings.trending_half_life_s}

    @staticmethod
    def axes(size: GridSize, ctx: Context) -> dict[str, list[Any]]:
        days = (1, 7, 30) if size == "small" else (1, 7, 30, 90)
        return {"half_life_s": [ctx.settings.trending_half_life_s] + [d * DAY_S for d in days]}

    @staticmethod
    def fit(ds: Dataset, rows: np.ndarray, params: dict[str, Any], ctx: Context) -> DenseScores:
        half_life = float(params["half_life_s"])
        eng = engagement_params(ctx)
        state: dict[str, tuple[float, int]] = {}
        for event in ds.events_of(time_order(ds, rows)):
            score, updated = state.get(event.video_id, (0.0, 0))
            state[event.video_id] = scoring.add_trend(
                score, updated, scoring.trending_weight(event, eng), event.ts, half_life
            )
        now = int(ds.ts[rows].max()) if len(rows) else 0
        index = {v: i for i, v in enumerate(ds.item_ids)}
        vector = np.zeros(ds.n_items)
        for video, (score, updated) in state.items():
            if score > 0:
                rank = scoring.trend_rank(score, updated, half_life)
                vector[index[video]] = scoring.trend_score_now(rank, now, half_life)
        return DenseScores(vector)
