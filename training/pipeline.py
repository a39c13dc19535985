"""One training run: extract -> tune (on the newest slice) -> transform -> fit (all of it) -> publish, with
stage timings."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recstream.scoring import EngagementParams
from recstream.serving.model_store import ModelRegistry, new_version
from recstream.settings import Settings, get_settings
from recstream.training import extract, fit, publish, transform, tuning
from recstream.training.params import TrainParams
from recstream.training.session import blas_implementation

Log = Callable[[str], None]


@dataclass(frozen=True)
class KafkaSource:
    bootstrap: str
    topic: str


@dataclass(frozen=True)
class DatasetSource:
    path: Path


@dataclass
class TrainResult:
    version: str
    metrics: dict[str, Any]
    baseline: dict[str, Any]
    data: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    activated: bool = False
    als_fit_s: float = 0.0
    """Seconds in Spark's ALS.fit alone (the fit stage also brings the factors to the driver)."""
    blend: dict[str, float] = field(default_factory=dict)
    """The blend weights published with the model."""
    served: dict[str, Any] = field(default_factory=dict)
    """The served blend's metrics on the test slice."""
    tuning: dict[str, Any] = field(default_factory=dict)


class Stages:
    """Prints one line per stage as it ends (progress you can watch), keeps the timings."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.timings: dict[str, float] = {}
        self.started = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        notes: dict[str, Any] = {}
        self.log(f"[train] {name} ...")
        t0 = time.perf_counter()
        yield notes
        self.timings[name] = round(time.perf_counter() - t0, 3)
        detail = " ".join(f"{k}={v}" for k, v in notes.items())
        self.log(f"[train] {name} done in {self.timings[name]:.1f} s {detail}".rstrip())

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 3)


def check_source(source: KafkaSource | DatasetSource) -> None:
    """Raise ExtractError now, before any Spark cost, if there is nothing to train on."""
    if isinstance(source, KafkaSource):
        offsets = extract.kafka_end_offsets(source.bootstrap, source.topic)
        if sum(end - start for start, end in offsets.values()) == 0:
            raise extract.ExtractError(f"Kafka topic {source.topic!r} is empty: nothing to train on")
    elif not source.path.exists():
        raise extract.ExtractError(f"dataset {source.path} does not exist")


def _extract(
    spark: SparkSession, source: KafkaSource | DatasetSource
) -> tuple[DataFrame, extract.SourceInfo]:
    if isinstance(source, KafkaSource):
        return extract.read_kafka(spark, source.bootstrap, source.topic)
    return extract.read_dataset(spark, source.path)


def train_once(
    spark: SparkSession,
    params: TrainParams,
    source: KafkaSource | DatasetSource,
    registry: ModelRegistry | None,
    *,
    force: bool = False,
    log: Log = print,
    settings: Settings | None = None,
) -> TrainResult:
    """Train, evaluate and (with a registry) publish one model version. The caller owns the session
    and the training lock."""
    settings = settings or get_settings()
    stages = Stages(log)
    version = new_version()
    engagement = EngagementParams(fast_skip_ms=params.fast_skip_ms)
    blocks = params.blocks or spark.sparkContext.defaultParallelism
    cached: list[DataFrame] = []
    try:
        # One pass over the raw log: per-event weights summed per (user, video) and cached; the event
        # count and time range come from the same cached pairs.
        with stages.stage("extract") as notes:
            events, info = _extract(spark, source)
            events = extract.restrict_window(events, params.window_days)
            pairs = transform.pairs(events, engagement).persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(pairs)
            stats = pairs.agg(F.sum("events"), F.min("first_ts"), F.max("last_ts")).first()
            n_events, min_ts, max_ts = int(stats[0] or 0), stats[1], stats[2]
            if n_events == 0:
                raise extract.ExtractError(f"no valid interactions in {info.kind} {info.name}")
            notes.update(source=f"{info.kind}:{info.name}", events=n_events)

        with stages.stage("tune") as notes:
            tuned = tuning.tune(spark, events, params, settings, blocks, log)
            params = tuned.params
            notes.update(
                rows=tuned.report["rows"],
                test_users=tuned.report["test_users"],
                trials=len(tuned.report["als_trials"]),
                rank=params.rank,
                reg_param=params.reg_param,
                alpha=params.alpha,
                max_iter=params.max_iter,
                weights=_short(tuned.weights),
                als=_short(tuned.metrics),
                popularity=_short(tuned.baseline),
                served=_short(tuned.served),
            )

        with stages.stage("transform") as notes:
            indexed = transform.index_ids(transform.ratings(pairs))
            ratings = indexed.ratings.persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(ratings)
            n_pairs = ratings.count()
            pairs.unpersist()
            cached.remove(pairs)
            n_users, n_items = len(indexed.user_ids), len(indexed.item_ids)
            notes.update(users=n_users, videos=n_items, pairs=n_pairs)

        with stages.stage("fit") as notes:
            t0 = time.perf_counter()
            model = fit.fit_als(ratings, params, blocks)
            als_fit_s = round(time.perf_counter() - t0, 3)  # ALS.fit alone (the rest: factors to numpy)
            factors = fit.collect_factors(model, n_users, n_items)
            notes.update(
                als_s=als_fit_s, rank=params.rank, iterations=params.max_iter, blocks=blocks, **_blas(spark)
            )

        data = {
            "source": info.as_dict(),
            "events": n_events,
            "min_ts": min_ts,
            "max_ts": max_ts,
            "users": n_users,
            "videos": n_items,
            "pairs": n_pairs,
            "trained_on": "all pairs",
        }
        result = TrainResult(
            version,
            tuned.metrics,
            tuned.baseline,
            data,
            als_fit_s=als_fit_s,
            blend=tuned.weights,
            served=tuned.served,
            tuning=tuned.report,
        )
        if registry is not None:
            with stages.stage("publish") as notes:
                meta = {
                    "created_at": int(time.time() * 1000),
                    "params": params.as_dict(),
                    "metrics": tuned.metrics,
                    "baseline": {"popularity": tuned.baseline},
                    "served": tuned.served,
                    "blend": tuned.weights,
                    "tuning": tuned.report,
                    "data": data,
                    # What serving needs to fold users in exactly as Spark solved them.
                    "reg_param": params.reg_param,
                    "alpha": params.alpha,
                    "reg_scaling": "per positive rating (Spark ALS-WR)",
                    "data_until_ms": max_ts,
                    "spark": {"master": spark.sparkContext.master, "blocks": blocks, **_blas(spark)},
                }
                artifact = publish.build_artifact(
                    version,
                    indexed.user_ids,
                    indexed.item_ids,
                    factors.user_factors,
                    factors.item_factors,
                    factors.has_user,
                    factors.has_item,
                    meta,
                )
                document = {**meta, "timings": dict(stages.timings)}
                metric = f"{params.gate_metric}@10"
                decision = publish.publish(registry, artifact, document, metric, params.gate_margin, force)
                result.gate = decision.as_dict()
                result.activated = decision.passed
                notes.update(version=version, activated=decision.passed, gate=f"'{decision.reason}'")
        result.timings = {**stages.timings, "total": stages.total()}
        log(f"[train] finished {version} in {result.timings['total']:.1f} s")
        return result
    finally:
        for df in cached:
            df.unpersist()


def _short(values: dict[str, Any]) -> str:
    return (
        ",".join(
            f"{k}={v:.4g}"
            for k, v in values.items()
            if k.startswith("ndcg@") or "@" not in k and k != "users"
        )
        or "-"
    )


def _blas(spark: SparkSession) -> dict[str, str]:
    return dict(part.split("=", 1) for part in blas_implementation(spark).split() if "=" in part)
