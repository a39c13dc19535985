"""The Spark side of training: the wire contract's rules, engagement weights, ratings, holdout, and ALS
itself (local[2]). Here rather than in tests/unit because each test needs a Spark session (a JVM)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recstream.records import ID_MAX_LENGTH, MAX_DURATION_MS, MAX_TS, Interaction
from recstream.scoring import EngagementParams, engagement_weight
from recstream.serving.foldin import fold_in
from recstream.training import fit, transform
from recstream.training.extract import INTERACTION_SCHEMA, is_valid, parse_json, valid
from recstream.training.params import TrainParams
from recstream.training.session import SMALL_DATA_CONF, SparkOptions, build_session


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    session = build_session(
        SparkOptions(master="local[2]", checkpoint_dir=checkpoints, driver_memory="1g", conf=SMALL_DATA_CONF)
    )
    yield session
    session.stop()


def _events(spark: SparkSession, rows: list[dict]) -> object:
    full = [{name: row.get(name) for name in INTERACTION_SCHEMA.fieldNames()} for row in rows]
    return spark.createDataFrame(full, schema=INTERACTION_SCHEMA)


def test_event_weights_are_the_streaming_weights(spark: SparkSession) -> None:
    params = EngagementParams(fast_skip_ms=2000)
    cases = [
        Interaction(type="view", user_id="u", video_id="a", ts=1, watch_time_ms=9_000, duration_ms=10_000),
        Interaction(type="view", user_id="u", video_id="b", ts=2, watch_time_ms=35_000, duration_ms=10_000),
        Interaction(type="view", user_id="u", video_id="c", ts=3, watch_time_ms=1_500, duration_ms=10_000),
        Interaction(type="view", user_id="u", video_id="d", ts=4, watch_time_ms=30_000, duration_ms=0),
        Interaction(type="view", user_id="u", video_id="e", ts=5, watch_time_ms=90_000),
        Interaction(type="view", user_id="u", video_id="f", ts=6, watch_time_ms=2_000, duration_ms=4_000),
        *(
            Interaction(type=t, user_id="u", video_id=t, ts=7)
            for t in ("like", "share", "comment", "follow", "skip")
        ),
    ]
    df = _events(spark, [c.model_dump() for c in cases]).withColumn("w", transform.event_weight(params))
    got = {r["video_id"]: r["w"] for r in df.collect()}
    want = {c.video_id: engagement_weight(c, params) for c in cases}
    assert got == pytest.approx(want, abs=1e-12)
    assert want["c"] < 0 and want["skip"] < 0  # the cases do cover negative feedback


def test_invalid_records_are_dropped(spark: SparkSession) -> None:
    rows = [
        {"type": "view", "user_id": "u", "video_id": "a", "ts": 1, "watch_time_ms": 5000},
        {"type": "teleport", "user_id": "u", "video_id": "a", "ts": 1},
        {"type": "like", "user_id": None, "video_id": "a", "ts": 1},
        {"type": "like", "user_id": "u", "video_id": "", "ts": 1},
    ]
    assert valid(_events(spark, rows)).count() == 1


LIKE = {"type": "like", "user_id": "u", "video_id": "v"}
VIEW = {"type": "view", "user_id": "u", "video_id": "v"}
# Records at the edges of recstream.records.Interaction's rules, on either side of each rule: JSON
# objects as dicts, other text as it is.
WIRE_CASES: dict[str, dict | str] = {
    "like": LIKE,
    "like at a time": {**LIKE, "ts": 5},
    "time null": {**LIKE, "ts": None},
    "latest time": {**LIKE, "ts": MAX_TS},
    "view": {**VIEW, "watch_time_ms": 0, "duration_ms": 0},
    "longest view": {**VIEW, "watch_time_ms": MAX_DURATION_MS, "duration_ms": MAX_DURATION_MS},
    "id punctuation": {**LIKE, "user_id": "a_b-c:d@e+f=g~h"},
    "longest id": {**LIKE, "video_id": "v" * ID_MAX_LENGTH},
    # rejected by the pydantic model
    "unknown type": {**LIKE, "type": "teleport"},
    "no type": {"user_id": "u", "video_id": "v"},
    "no user": {"type": "like", "video_id": "v"},
    "null video": {**LIKE, "video_id": None},
    "empty video": {**LIKE, "video_id": ""},
    "id too long": {**LIKE, "user_id": "u" * (ID_MAX_LENGTH + 1)},
    "id with a space": {**LIKE, "user_id": "a b"},
    "id with a dot": {**LIKE, "user_id": "a.b"},
    "id with a dollar": {**LIKE, "video_id": "$where"},
    "id ending in a newline": {**LIKE, "user_id": "u\n"},
    "id not ascii": {**LIKE, "user_id": "\u00fc"},
    "id a number": {**LIKE, "user_id": 42},
    "type a bool": {**LIKE, "type": True},
    "negative time": {**LIKE, "ts": -1},
    "time too late": {**LIKE, "ts": MAX_TS + 1},
    "view without watch time": VIEW,
    "view with null watch time": {**VIEW, "watch_time_ms": None},
    "negative watch time": {**VIEW, "watch_time_ms": -1},
    "watch time too long": {**VIEW, "watch_time_ms": MAX_DURATION_MS + 1},
    "negative duration": {**LIKE, "duration_ms": -5},
    "duration too long": {**LIKE, "duration_ms": MAX_DURATION_MS + 1},
    "unknown field": {**LIKE, "mood": "happy"},
    "erasure": {"erase_user": "u", "ts": 5},
    "single quotes": "{'type': 'like', 'user_id': 'u', 'video_id': 'v'}",
    "a list": "[1, 2]",
    "not json": "like u v",
    "empty line": "",
}
WIRE_LINES = {case: v if isinstance(v, str) else json.dumps(v) for case, v in WIRE_CASES.items()}


def _pydantic_accepts(text: str) -> bool:
    try:
        Interaction.model_validate_json(text)
    except ValidationError:
        return False
    return True


def test_training_keeps_exactly_the_records_the_wire_contract_accepts(spark: SparkSession) -> None:
    """The Kafka path's parse and rules (`parse_json`, `is_valid`) against the pydantic model the API and
    the agents validate with: what one refuses, the other refuses too."""
    raw = spark.createDataFrame(list(WIRE_LINES.items()), "case string, json string")
    kept = {row["case"] for row in parse_json(raw).where(is_valid()).collect()}
    assert kept == {case for case, text in WIRE_LINES.items() if _pydantic_accepts(text)}
    assert len(kept) == 8  # the cases listed before the rejected ones: not vacuous


def test_the_dataset_path_applies_the_same_rules(spark: SparkSession, tmp_path: Path) -> None:
    from recstream.training.extract import read_dataset

    path = tmp_path / "log.jsonl"
    path.write_text("".join(text + "\n" for text in WIRE_LINES.values()))
    events, _info = read_dataset(spark, path)
    fields = ["type", "user_id", "video_id", "watch_time_ms", "duration_ms"]  # ts: stamped when absent
    got = sorted(tuple(row[f] for f in fields) for row in events.collect())
    accepted = [Interaction.model_validate_json(t) for t in WIRE_LINES.values() if _pydantic_accepts(t)]
    assert got == sorted(tuple(getattr(r, f) for f in fields) for r in accepted)


def test_ratings_sum_per_pair_and_hold_out_each_users_latest(spark: SparkSession) -> None:
    view = {"type": "view", "watch_time_ms": 10_000, "duration_ms": 10_000}  # weight 1.0
    rows = [
        {**view, "user_id": "a", "video_id": "v1", "ts": 10},
        {"type": "like", "user_id": "a", "video_id": "v1", "ts": 11},  # v1: 1.0 + 1.0
        {**view, "user_id": "a", "video_id": "v2", "ts": 50},  # a's latest: held out
        {**view, "user_id": "a", "video_id": "v3", "ts": 20},
        {"type": "skip", "user_id": "a", "video_id": "v4", "ts": 30},  # -0.5
        {**view, "user_id": "b", "video_id": "v1", "ts": 99},  # b has 2 videos: no holdout
        {**view, "user_id": "b", "video_id": "v2", "ts": 98},
        {**view, "user_id": "b", "video_id": "v3", "ts": 97, "watch_time_ms": 1000},  # fast skip ...
        {"type": "like", "user_id": "b", "video_id": "v3", "ts": 97},  # ... + like = 0.5
        {"type": "skip", "user_id": "c", "video_id": "v9", "ts": 1},
        {"type": "like", "user_id": "c", "video_id": "v9", "ts": 2},
        {"type": "view", "user_id": "c", "video_id": "v9", "ts": 3, "watch_time_ms": 1000},  # r == 0: dropped
    ]
    r = transform.ratings(transform.pairs(_events(spark, rows), EngagementParams()))
    indexed = transform.index_ids(r)
    assert indexed.user_ids == ["a", "b"] and indexed.item_ids == ["v1", "v2", "v3", "v4"]
    marked = transform.mark_holdout(indexed.ratings, holdout=1, min_user_videos=4)
    got = {(row["user_id"], row["video_id"]): (row["r"], row["held"]) for row in marked.collect()}
    assert got == {
        ("a", "v1"): (2.0, False),
        ("a", "v2"): (1.0, True),
        ("a", "v3"): (1.0, False),
        ("a", "v4"): (-0.5, False),
        ("b", "v1"): (1.0, False),
        ("b", "v2"): (1.0, False),
        ("b", "v3"): (0.5, False),
    }
    sets = {
        row["user"]: (sorted(row["train_items"]), row["test_items"])
        for row in transform.eval_sets(marked).collect()
    }
    assert sets == {0: ([0, 2, 3], [1])}


def _fit(spark: SparkSession, triples: list[tuple[int, int, float]], params: TrainParams) -> fit.Factors:
    df = spark.createDataFrame(triples, schema="user int, item int, r double")
    model = fit.fit_als(df, params, blocks=2)
    n_users = max(t[0] for t in triples) + 1
    n_items = max(t[1] for t in triples) + 1
    return fit.collect_factors(model, n_users, n_items)


def test_checkerboard_withheld_item_ranks_first(spark: SparkSession) -> None:
    """Three taste groups; each user engaged with every video of their group but one. That one must
    be the user's top recommendation (the test idea of benfred/implicit)."""
    groups, users_per_group, items_per_group = 3, 12, 8
    triples, withheld = [], {}
    for g in range(groups):
        for k in range(users_per_group):
            user = g * users_per_group + k
            withheld[user] = g * items_per_group + k % items_per_group
            for j in range(items_per_group):
                item = g * items_per_group + j
                if item != withheld[user]:
                    triples.append((user, item, 1.0 + (j % 3) * 0.5))
    factors = _fit(spark, triples, TrainParams(rank=6, reg_param=0.01, alpha=2.0, max_iter=10))
    scores = factors.user_factors @ factors.item_factors.T
    seen = np.zeros_like(scores, dtype=bool)
    for u, i, _ in triples:
        seen[u, i] = True
    scores[seen] = -np.inf
    top = scores.argmax(axis=1)
    assert {u: int(top[u]) for u in withheld} == withheld


def test_fold_in_reproduces_spark_user_vectors(spark: SparkSession) -> None:
    """Spark's last half-sweep solves each user's system against the final item factors, so folding
    a training user in (serving's exact step, lambda scaled by the positive count) gives Spark's
    vector back; negative ratings included."""
    rng = np.random.default_rng(3)
    triples = []
    for u in range(40):
        for i in rng.choice(30, size=rng.integers(3, 12), replace=False):
            triples.append((u, int(i), float(rng.choice([-0.5, 0.4, 1.0, 2.0, 3.5]))))
    params = TrainParams(rank=8, reg_param=0.1, alpha=3.0, max_iter=5)
    factors = _fit(spark, triples, params)
    y = factors.item_factors.astype(np.float64)
    yty = y.T @ y
    for u in range(40):
        rows = np.array([i for uu, i, _ in triples if uu == u])
        r = np.array([v for uu, _, v in triples if uu == u])
        x = fold_in(factors.item_factors, yty, rows, r, params.reg_param, params.alpha)
        if x is None:  # only negatives: Spark solves A x = 0
            np.testing.assert_allclose(factors.user_factors[u], 0, atol=1e-6)
            continue
        np.testing.assert_allclose(x, factors.user_factors[u], rtol=1e-4, atol=1e-5 * np.abs(x).max())


def test_synthetic_log_reads_back_through_the_dataset_path(spark: SparkSession, tmp_path: Path) -> None:
    from recstream.training import synthetic
    from recstream.training.extract import read_dataset

    log = synthetic.generate(50, 20, 400, n_topics=3, seed=5)
    events, info = read_dataset(spark, synthetic.write_jsonl(log, tmp_path / "log.jsonl"))
    assert info.kind == "dataset"
    assert events.count() == len(log)
    assert events.agg(F.countDistinct("user_id")).first()[0] == 50
