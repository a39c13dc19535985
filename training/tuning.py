"""Tuning at training time: ALS's parameters and the blend weights, chosen on the most recent slice of
the log and published with the model.

The log's newest `tune_max_events` events come to the driver as an evaluation `Dataset`; each user's
newest row (a video and the actions on it) is held out as the test slice and the one before it
validates (users with at least 3 rows; the leave-one-out protocol of `recstream evaluate`, with every
older row kept for training). Per user rather than one global time cut: a user who came once, in a
burst, still says what a model should have predicted next, and every active user is measured.
`recstream.evaluation.runner` then does exactly what `recstream evaluate` does: ALS's parameters
searched on validation within the trial budget (NDCG@10, not RMSE), then refitted on the part before
the test slice and measured once on it, with the popularity baseline: the gate's numbers (the test
slice never chooses anything).

The blend weights are chosen on another holdout of the same slice: its last `BLEND_TEST_FRACTION` of
rows in time (every user active then, all of their rows after the cut; the components fitted once on
the rows before it, `runner.choose_blend`), with ALS at the chosen parameters, by `runner.blend_rule`:
of the weightings at least as accurate (NDCG@10) as the best single source there, the one with the most
popularity-debiased NDCG@10 (`metrics.debiased_ndcg`). Accuracy alone rewards what the log's users
were steered to next (the same creator or category as the video before, popular videos); a blend tuned
on it leaned on item-CF and trending and fell behind ALS alone in the closed loop, where users react to
their taste (docs/evaluation.md, "Closed loop"). The debiased target alone can settle on a blend less
accurate than one of its parts; the floor prevents that. The served blend is then measured on the
leave-one-out test slice with those weights (`served`), beside ALS and popularity.

Item-CF and trending are the streaming agents' with the served settings (`fixed`): a training round
cannot change what the agents compute, only how much serving trusts each source. Weights an operator
pins in the settings are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recstream.evaluation import metrics, protocols, runner
from recstream.evaluation.data import Dataset, from_events
from recstream.evaluation.models import Context
from recstream.evaluation.models.hybrid import Hybrid, published
from recstream.evaluation.tune import key
from recstream.records import Interaction
from recstream.scoring import EngagementParams
from recstream.settings import Settings
from recstream.training.params import TrainParams

ALS_PARAMS = ("rank", "reg_param", "alpha", "max_iter")
MODELS = ["popularity", "spark-als", Hybrid.NAME]
GRID = "train"
BLEND_TEST_FRACTION = 0.2
"""The blend's holdout: this share of the recent slice's rows, the newest (see the module docstring)."""


@dataclass
class Tuned:
    params: TrainParams
    """The training parameters with the chosen ALS parameters."""
    weights: dict[str, float]
    """The blend weights to publish: {itemcf, als, trending}."""
    metrics: dict[str, float]
    """ALS on the test slice (the gate's numbers)."""
    baseline: dict[str, float]
    """Popularity on the test slice."""
    served: dict[str, float]
    """The blend with the chosen weights on the test slice: what users get."""
    report: dict[str, Any]
    """Split sizes and every trial, for the registry document and the model panel."""


def recent_events(events: DataFrame, max_events: int, params: EngagementParams) -> Dataset:
    """The newest `max_events` events, oldest first, as an evaluation Dataset (ties in a fixed order,
    so the same log gives the same split)."""
    order = [F.col("ts"), F.col("user_id"), F.col("video_id"), F.col("type")]
    rows = events.orderBy(*[c.desc() for c in order]).limit(max_events).collect()
    rows.reverse()
    return from_events(
        (
            Interaction.model_construct(
                type=r["type"],
                user_id=r["user_id"],
                video_id=r["video_id"],
                ts=int(r["ts"]),
                watch_time_ms=r["watch_time_ms"],
                duration_ms=r["duration_ms"],
            )
            for r in rows
        ),
        params,
        name="log",
    )


def _means(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    if not len(per_user["ndcg@10"]):  # no user to measure on: no metric, so the gate refuses
        return {"users": 0}
    out = {name: round(float(per_user[name].mean()), 6) for name in ("ndcg@10", "recall@10", "precision@10")}
    out["map@10"] = round(float(per_user["map"].mean()), 6)  # Recommenders' MAP over the top 10
    n = len(per_user["ndcg@10"])
    out["users"] = n
    out["ndcg@10_ci"] = round(metrics.mean_ci(per_user["ndcg@10"])[1], 6) if n > 1 else 0.0
    return out


def tune(
    spark: SparkSession,
    events: DataFrame,
    params: TrainParams,
    settings: Settings,
    blocks: int,
    log: Any = print,
) -> Tuned:
    """Choose ALS's parameters and the blend weights on the log's most recent slice (see the module)."""
    engagement = EngagementParams(settings.completion_ratio, params.fast_skip_ms)
    ds = recent_events(events, params.tune_max_events, engagement)
    protocol = protocols.leave_one_out(ds, keep_last=max(ds.n_rows, 3))
    start = {name: getattr(params, name) for name in ALS_PARAMS}
    ctx = Context(
        settings,
        threads=blocks,
        max_trials=params.tune_trials,
        spark_factory=lambda: spark,
        starts={"spark-als": start},
    )
    try:
        result = runner.run(
            ds,
            protocol,
            MODELS,
            GRID,
            ctx,
            log=lambda line: log(line.replace("[evaluate]", "[train] tune:")),
            fixed=frozenset({"itemcf", "trending"}),
        )
        als = result.models["spark-als"]
        chosen = {name: type(start[name])(als.params[name]) for name in ALS_PARAMS}
        blend, blend_t = runner.choose_blend(
            ds,
            protocols.temporal(ds, BLEND_TEST_FRACTION).test,
            replace(ctx, starts={"spark-als": chosen}),  # the same Spark session and cache
            log=lambda line: log(line.replace("[evaluate]", "[train] tune blend:")),
        )
    finally:
        for cached in ctx.cache.values():  # the trials' ratings, persisted in the training session
            cached.ratings.unpersist()
    assert result.test_sources is not None
    served = runner.measure_blend(result.test_sources, blend.search.best, result.test, ctx)
    next_item = result.models[Hybrid.NAME]
    report = {
        "protocol": "each user's newest row tests, the one before validates (users with 3+ rows)",
        "rows": ds.n_rows,
        "validation_users": len(result.validation.users),
        "test_users": len(result.test.users),
        "budget": params.tune_trials,
        "als_trials": [
            {"params": t.params, "ndcg@10": round(t.value, 6), "fit_s": round(t.fit_s, 3)} for t in als.trials
        ],
        "blend_protocol": (
            f"the newest {BLEND_TEST_FRACTION:.0%} of the rows, the components fitted on the rest; of the "
            f"weightings with {runner.TUNE_METRIC} >= the best single source's, the most {runner.DEBIASED} "
            "(each relevant video weighted 1/(training rows + 1))"
        ),
        "blend_users": len(blend_t.users),
        "blend_floor": round(blend.floor, 6),  # the best single source's NDCG@10 on the blend holdout
        "blend_singles": {source: round(blend.accuracy[key(w)], 6) for source, w in blend.singles.items()},
        "blend_trials": [
            {
                "weights": published(t.params),
                runner.DEBIASED: round(t.value, 6),
                runner.TUNE_METRIC: round(blend.accuracy[key(t.params)], 6),
            }
            for t in blend.search.trials
        ],
        "validation": {
            "als": round(als.validation, 6),  # NDCG@10 on the leave-one-out validation rows
            "blend": round(blend.search.value, 6),  # the chosen weights' debiased NDCG@10 on their holdout
        },
        # What the next-item target alone would have chosen, and what it scores on the test slice.
        "next_item_blend": {
            "weights": published(next_item.params),
            "ndcg@10": _means(next_item.per_user).get("ndcg@10"),
        },
    }
    return Tuned(
        params=replace(params, **chosen),
        weights=published(blend.search.best),
        metrics=_means(als.per_user),
        baseline=_means(result.models["popularity"].per_user),
        served=_means(served),
        report=report,
    )
