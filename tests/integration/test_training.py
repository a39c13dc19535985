"""Training publishes to the real registry: Redis (active model) and MongoDB (every version)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import SparkSession

from recstream.serving.foldin import ModelCache
from recstream.serving.model_store import (
    BLOBS,
    ModelRegistry,
    ModelStoreError,
    active_key,
    blob_key,
)
from recstream.serving.training_lock import LockHeld
from recstream.settings import Settings
from recstream.training import synthetic
from recstream.training.params import TrainParams
from recstream.training.pipeline import DatasetSource, TrainResult, train_once
from recstream.training.session import SMALL_DATA_CONF, SparkOptions, build_session

PARAMS = TrainParams(rank=8, max_iter=6, reg_param=0.05, alpha=5.0, tune_trials=2)


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    options = SparkOptions(
        master="local[2]",
        checkpoint_dir=tmp_path_factory.mktemp("checkpoints"),
        driver_memory="1g",
        conf=SMALL_DATA_CONF,
    )
    session = build_session(options)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def registry(services: Settings) -> Iterator[ModelRegistry]:
    reg = ModelRegistry(services, namespace=f"test-model-{uuid.uuid4().hex[:8]}")
    reg.ensure_indexes()
    yield reg
    reg.delete_namespace()
    reg.close()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetSource:
    log = synthetic.generate(400, 80, 8000, n_topics=4, seed=1)
    return DatasetSource(synthetic.write_jsonl(log, tmp_path_factory.mktemp("data") / "log.jsonl"))


@dataclass
class Rounds:
    """Three training rounds into one registry, and what the registry said right after each: the tests
    below read these snapshots, so they pass in any order (some of them change the registry)."""

    first: TrainResult
    active_after_first: str | None
    first_doc: dict
    first_blobs: bool
    second: TrainResult
    versions_after_second: list[str]
    first_status_after_second: str
    first_blob_ttl_after_second: int
    worse: TrainResult
    worse_lines: list[str]
    active_after_worse: str | None
    worse_doc: dict
    worse_blob_in_redis: bool


@pytest.fixture(scope="module")
def rounds(spark: SparkSession, registry: ModelRegistry, dataset: DatasetSource) -> Rounds:
    def blobs_exist(version: str) -> bool:
        return all(registry.redis.exists(blob_key(version, b, registry.namespace)) for b in BLOBS)

    first = train_once(spark, PARAMS, dataset, registry, log=lambda _line: None)
    after_first = (registry.active_version(), registry.get(first.version), blobs_exist(first.version))
    second = train_once(spark, PARAMS, dataset, registry, log=lambda _line: None)
    after_second = (
        [d["_id"] for d in registry.versions()],
        registry.get(first.version)["status"],
        registry.redis.ttl(blob_key(first.version, "item_factors", registry.namespace)),
    )
    weak = TrainParams(rank=1, max_iter=1, tune_trials=1)  # one factor: about popularity, no tastes
    lines: list[str] = []
    worse = train_once(spark, weak, dataset, registry, log=lines.append)
    return Rounds(
        first, *after_first, second, *after_second, worse, lines,
        registry.active_version(), registry.get(worse.version),
        bool(registry.redis.exists(blob_key(worse.version, "item_factors", registry.namespace))),
    )  # fmt: skip


def test_first_model_is_registered_with_metrics_and_activated(rounds: Rounds) -> None:
    first = rounds.first
    assert first.activated and first.gate["reason"].startswith("no active model, above popularity")
    assert rounds.active_after_first == first.version
    doc = rounds.first_doc
    assert doc["status"] == "active"
    assert set(doc["metrics"]) == {"ndcg@10", "ndcg@10_ci", "recall@10", "precision@10", "map@10", "users"}
    assert doc["metrics"]["users"] > 100  # users with new positives in the newest 20 % of the log
    # Tastes are learnable on this data: the model must beat popularity on the same test slice.
    assert doc["metrics"]["ndcg@10"] > 1.2 * doc["baseline"]["popularity"]["ndcg@10"]
    assert doc["data"]["events"] == first.data["events"] > 8000
    assert doc["data"]["min_ts"] < doc["data"]["max_ts"] == doc["data_until_ms"]
    assert set(doc["timings"]) >= {"extract", "tune", "transform", "fit"}
    # Tuned within the budget of two ALS trials; the blend weights and the served blend's numbers go
    # out with the model, and the weights chosen are the best of those tried on validation.
    tuning = doc["tuning"]
    assert len(tuning["als_trials"]) == 2 and tuning["als_trials"][0]["params"]["rank"] == 8
    best = max(tuning["als_trials"], key=lambda t: t["ndcg@10"])
    assert {k: doc["params"][k] for k in best["params"]} == best["params"]
    assert set(doc["blend"]) == {"itemcf", "als", "trending"} and doc["blend"]["als"] > 0
    # The weights are chosen on their own holdout (the newest rows): of those at least as accurate as the
    # best single source there, the most popularity-debiased; the most accurate when none is.
    trials = tuning["blend_trials"]
    assert tuning["blend_floor"] == max(tuning["blend_singles"].values())
    chosen = next(t for t in trials if t["weights"] == doc["blend"])
    assert chosen["debiased-ndcg@10"] == tuning["validation"]["blend"]
    eligible = [t for t in trials if t["ndcg@10"] >= tuning["blend_floor"]]
    if eligible:
        assert chosen in eligible and chosen["debiased-ndcg@10"] == max(
            t["debiased-ndcg@10"] for t in eligible
        )
    else:
        assert chosen["ndcg@10"] == max(t["ndcg@10"] for t in trials)
    assert tuning["blend_users"] > 0 and set(tuning["next_item_blend"]["weights"]) == set(doc["blend"])
    assert 0 < doc["served"]["ndcg@10"] <= 1 and doc["served"]["users"] == doc["metrics"]["users"]
    assert rounds.first_blobs


async def test_serving_cache_loads_the_active_model(
    rounds: Rounds, registry: ModelRegistry, services: Settings
) -> None:
    cache = ModelCache.from_url(services.redis_url, namespace=registry.namespace, check_interval_s=0)
    try:
        assert await cache.refresh()
        model = cache.model
        active = registry.get(registry.active_version())  # whichever an earlier test left active
        assert model.version == active["_id"] and model.rank == active["params"]["rank"]
        assert model.blend == active["blend"]  # serving blends with the weights the round chose
        assert model.item_factors.shape == (80, model.rank) and len(model.user_index) == 400
        stored = registry.load(model.version)  # the durable copy (MongoDB blobs) is the same model
        np.testing.assert_array_equal(stored.item_factors, model.item_factors)
        assert stored.user_ids == sorted(model.user_index, key=model.user_index.get)
        scores = cache.score_user("u0", [["v1", 1, 1.0]], k=10)
        assert len(scores) == 10 and "v1" not in scores
        assert not await cache.refresh()  # unchanged: nothing reloaded
    finally:
        await cache.close()


def test_second_training_makes_a_new_active_version(rounds: Rounds) -> None:
    first, second = rounds.first, rounds.second
    assert second.version != first.version and second.activated
    assert rounds.versions_after_second[:2] == [second.version, first.version]
    assert rounds.first_status_after_second == "retired"
    # The replaced version stays readable for a while (readers mid-load), then expires from Redis.
    assert 0 < rounds.first_blob_ttl_after_second <= 600


def test_a_worse_model_is_kept_but_not_activated(rounds: Rounds, registry: ModelRegistry) -> None:
    worse, active_before = rounds.worse, rounds.second.version
    assert not worse.activated
    assert rounds.active_after_worse == active_before
    doc = rounds.worse_doc
    assert doc["status"] == "rejected" and doc["gate"]["passed"] is False
    assert doc["gate"]["active_version"] == active_before and "ndcg@10" in doc["gate"]["reason"]
    assert not rounds.worse_blob_in_redis
    assert any("activated=False" in line for line in rounds.worse_lines)
    # Kept in the registry: it can still be activated by hand (rollback/forward path), and back.
    assert registry.activate_version(worse.version) == active_before
    assert registry.redis.get(active_key(registry.namespace)).decode() == worse.version
    assert registry.load(worse.version).item_factors.shape == (80, 1)
    assert registry.activate_version(active_before) == worse.version


def test_only_one_training_at_a_time(registry: ModelRegistry) -> None:
    with registry.training_lock(ttl_s=30, holder="first"):
        with pytest.raises(LockHeld, match="first"):
            with registry.training_lock(ttl_s=30, holder="second"):
                pass
        assert 0 < registry.redis.pttl(registry.lock_key) <= 30_000
    with registry.training_lock(ttl_s=30):  # released: free again
        pass
    assert not registry.redis.exists(registry.lock_key)


def test_pruning_drops_old_factors_but_keeps_every_version(rounds: Rounds, registry: ModelRegistry) -> None:
    versions = [d["_id"] for d in registry.versions()]
    active = registry.active_version()
    assert versions == [rounds.worse.version, rounds.second.version, rounds.first.version]
    pruned = registry.prune_factors(keep=1)
    assert active not in pruned and set(pruned) == set(versions[1:]) - {active}
    assert [d["_id"] for d in registry.versions()] == versions  # documents and metrics stay
    assert all(registry.get(v)["factors_pruned"] and "ndcg@10" in registry.get(v)["metrics"] for v in pruned)
    assert registry.load(active).item_factors.shape[0] == 80
    with pytest.raises(ModelStoreError, match="no stored factors"):
        registry.load(pruned[0])


def test_a_first_model_that_does_not_beat_popularity_is_not_activated(
    spark: SparkSession, services: Settings, dataset: DatasetSource
) -> None:
    fresh = ModelRegistry(services, namespace=f"test-model-{uuid.uuid4().hex[:8]}")
    try:
        weak = TrainParams(
            rank=1, max_iter=1, tune_trials=1
        )  # one factor, one sweep: learns less than a chart
        result = train_once(spark, weak, dataset, fresh, log=lambda _line: None)
        assert not result.activated and fresh.active_version() is None
        reason = fresh.get(result.version)["gate"]["reason"]
        assert "does not beat popularity" in reason and reason.startswith("ndcg@10")
        assert result.metrics["ndcg@10"] <= result.baseline["ndcg@10"]
        forced = train_once(spark, weak, dataset, fresh, force=True, log=lambda _line: None)
        assert forced.activated and fresh.active_version() == forced.version
    finally:
        fresh.delete_namespace()
        fresh.close()


def test_dataset_path_must_exist(spark: SparkSession, registry: ModelRegistry, tmp_path: Path) -> None:
    from recstream.training.extract import ExtractError

    with pytest.raises(ExtractError, match="does not exist"):
        train_once(spark, PARAMS, DatasetSource(tmp_path / "missing.jsonl"), registry, log=lambda _l: None)
