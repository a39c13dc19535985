"""Transform: events -> implicit ratings per (user, video) -> integer ids -> time-based holdout.

Pure DataFrame expressions (no Python UDFs: everything runs in the JVM).

The rating r of a (user, video) pair is the sum of the engagement weights of the user's events on the
video, the same numbers the streaming side computes (recstream.scoring.engagement_weight, summed per
video by update_history), so serving's fold-in can turn a live history into exactly the rows ALS was
trained on:

- view: watch ratio = watch_time / duration, capped at 2 (replays count, but not without bound);
  unknown or zero duration: watch time / 60 s, capped at 1;
- a view shorter than fast_skip_ms, or an explicit skip: ACTION_WEIGHTS["skip"] (-0.5);
- like 1.0, comment 1.0, share 1.5, follow 1.5 (ACTION_WEIGHTS).

ALS (implicitPrefs) then uses confidence c = 1 + alpha * |r| and preference p = 1 if r > 0 else 0: a
video the user mostly skipped is a confident "not this" rather than a missing entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.ml.feature import StringIndexer
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recstream.scoring import ACTION_WEIGHTS, EngagementParams

MAX_VIEW_RATIO = 2.0  # engagement_weight: min(watch_ratio, 2.0)
UNKNOWN_DURATION_SATURATION_MS = 60_000  # engagement_weight: watch time credited up to a minute


def event_weight(params: EngagementParams) -> Column:
    """recstream.scoring.engagement_weight as a Spark expression."""
    watch = F.coalesce(F.col("watch_time_ms"), F.lit(0)).cast("double")
    duration = F.col("duration_ms").cast("double")
    view = (
        F.when(watch < params.fast_skip_ms, F.lit(ACTION_WEIGHTS["skip"]))
        .when(
            duration.isNull() | (duration == 0), F.least(watch / UNKNOWN_DURATION_SATURATION_MS, F.lit(1.0))
        )
        .otherwise(F.least(watch / duration, F.lit(MAX_VIEW_RATIO)))
    )
    weight = F.when(F.col("type") == "view", view)
    for action, w in ACTION_WEIGHTS.items():
        weight = weight.when(F.col("type") == action, F.lit(float(w)))
    return weight.otherwise(F.lit(0.0))


def pairs(events: DataFrame, params: EngagementParams) -> DataFrame:
    """One row per (user_id, video_id) seen in the log: r (summed weight), first_ts, last_ts, events.
    The one pass over the raw log; everything after works on these (much fewer) rows."""
    return (
        events.withColumn("w", event_weight(params))
        .groupBy("user_id", "video_id")
        .agg(
            F.sum("w").alias("r"),
            F.min("ts").alias("first_ts"),
            F.max("ts").alias("last_ts"),
            F.count(F.lit(1)).alias("events"),
        )
    )


def ratings(pairs_df: DataFrame) -> DataFrame:
    """The pairs ALS learns from: r == 0 (e.g. a like cancelled by a fast skip) says nothing."""
    return pairs_df.where(F.abs(F.col("r")) > 1e-9)


@dataclass(frozen=True)
class Indexed:
    """Ratings with integer ids `user` and `item`; `user_ids[i]` / `item_ids[j]` map them back."""

    ratings: DataFrame
    user_ids: list[str]
    item_ids: list[str]


def index_ids(ratings_df: DataFrame) -> Indexed:
    """Integer ids for ALS. Alphabetical order, so the map depends only on the set of ids; it is
    published with the model (the persisted id map serving uses)."""
    indexer = StringIndexer(
        inputCols=["user_id", "video_id"],
        outputCols=["user_ix", "item_ix"],
        stringOrderType="alphabetAsc",
        handleInvalid="error",
    ).fit(ratings_df)
    user_ids, item_ids = (list(labels) for labels in indexer.labelsArray)
    indexed = (
        indexer.transform(ratings_df)
        .withColumn("user", F.col("user_ix").cast("int"))
        .withColumn("item", F.col("item_ix").cast("int"))
        .drop("user_ix", "item_ix")
    )
    return Indexed(indexed, user_ids, item_ids)


def mark_holdout(indexed: DataFrame, holdout: int, min_user_videos: int) -> DataFrame:
    """Adds `held` (bool): each user's `holdout` most recent videos, for users with at least
    `min_user_videos` videos. The time order is per user: what the model must predict is what each
    user did last, as in production."""
    by_recency = Window.partitionBy("user").orderBy(F.desc("last_ts"), F.desc("item"))
    per_user = Window.partitionBy("user")
    return (
        indexed.withColumn("recency_rank", F.row_number().over(by_recency))
        .withColumn("user_videos", F.count(F.lit(1)).over(per_user))
        .withColumn(
            "held",
            (F.lit(holdout) > 0)
            & (F.col("recency_rank") <= holdout)
            & (F.col("user_videos") >= min_user_videos),
        )
        .drop("recency_rank", "user_videos")
    )


def eval_sets(marked: DataFrame) -> DataFrame:
    """Per holdout user: the items seen in training (masked when ranking) and the held-out positives
    (the relevant set). Users whose held-out videos were all skips have nothing to find: dropped."""
    return (
        marked.groupBy("user")
        .agg(
            F.collect_list(F.when(~F.col("held"), F.col("item"))).alias("train_items"),
            F.collect_list(F.when(F.col("held") & (F.col("r") > 0), F.col("item"))).alias("test_items"),
        )
        .where(F.size("test_items") > 0)
    )
