"""Serving-side fold-in and the model cache's scoring decisions (numpy only, no services)."""

from __future__ import annotations

import numpy as np
import pytest
import redis.asyncio as aioredis
from scipy.sparse import csr_matrix

from recstream.serving.foldin import LoadedModel, ModelCache, fold_in, history_ratings
from recstream.serving.model_store import ModelArtifact

RANK = 16


def _user(rng: np.random.Generator, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    rows = rng.choice(n_items, size=12, replace=False)
    r = rng.choice([-0.5, 0.3, 1.0, 2.0, 3.5], size=12)
    r[0] = 1.5  # at least one positive
    return rows, r


@pytest.mark.filterwarnings("ignore:OpenBLAS is configured")
def test_fold_in_matches_implicit_recalculate_user() -> None:
    """implicit's recalculate_user solves (YtY + Yt(Cu - I)Y + reg I) x = Yt Cu p with Cu taken from
    the matrix (negative entries: preference 0, confidence |value|). Spark's confidence is
    1 + alpha * |r| and its lambda is scaled by the positive count, so the two agree when implicit is
    given value = sign(r) * (1 + alpha * |r|) and regularization = reg_param * n_positive."""
    from implicit.cpu.als import AlternatingLeastSquares

    rng = np.random.default_rng(11)
    n_items, reg_param, alpha = 60, 0.08, 4.0
    y = rng.normal(0, 0.3, (n_items, RANK)).astype(np.float32)
    rows, r = _user(rng, n_items)
    n_positive = int((r > 0).sum())

    model = AlternatingLeastSquares(
        factors=RANK, regularization=reg_param * n_positive, alpha=1.0, random_state=0
    )
    model.item_factors = y
    model.user_factors = np.zeros((1, RANK), dtype=np.float32)
    values = np.sign(r) * (1 + alpha * np.abs(r))
    user_items = csr_matrix((values.astype(np.float32), (np.zeros(len(rows), int), rows)), shape=(1, n_items))
    want = model.recalculate_user(0, user_items)

    yd = y.astype(np.float64)
    got = fold_in(y, yd.T @ yd, rows, r, reg_param, alpha)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_fold_in_solves_the_full_normal_equations() -> None:
    """The closed form from the paper, built densely over every item (C_u = diag(c), p in {0, 1})."""
    rng = np.random.default_rng(12)
    n_items, reg_param, alpha = 40, 0.05, 2.5
    y = rng.normal(0, 0.3, (n_items, RANK))
    rows, r = _user(rng, n_items)
    c = np.ones(n_items)
    c[rows] = 1 + alpha * np.abs(r)
    p = np.zeros(n_items)
    p[rows[r > 0]] = 1
    lam = reg_param * (r > 0).sum()
    want = np.linalg.solve(y.T @ (c[:, None] * y) + lam * np.eye(RANK), y.T @ (c * p))
    np.testing.assert_allclose(fold_in(y, y.T @ y, rows, r, reg_param, alpha), want, rtol=1e-10)


def test_no_positive_rating_no_vector() -> None:
    y = np.ones((3, 2))
    assert fold_in(y, y.T @ y, np.array([0, 1]), np.array([-0.5, -1.0]), 0.1, 1.0) is None


def test_history_ratings_sum_repeats_and_skip_unknown_videos() -> None:
    index = {"a": 0, "b": 1, "c": 2}
    history = [["a", 5, 1.0], ["zzz", 4, 2.0], ["b", 3, -0.5], ["a", 2, 0.5], ["c", 1, 0.5], ["c", 0, -0.5]]
    rows, r = history_ratings(history, index)
    assert dict(zip(rows.tolist(), r.tolist(), strict=True)) == {0: 1.5, 1: -0.5}


def _model(n_users: int = 5, n_items: int = 30, until: int = 1_000) -> LoadedModel:
    rng = np.random.default_rng(5)
    artifact = ModelArtifact(
        version="v-test",
        user_ids=[f"u{i}" for i in range(n_users)],
        item_ids=[f"v{i}" for i in range(n_items)],
        user_factors=rng.normal(0, 0.5, (n_users, RANK)).astype(np.float32),
        item_factors=rng.normal(0, 0.5, (n_items, RANK)).astype(np.float32),
        meta={"reg_param": 0.1, "alpha": 2.0, "data_until_ms": until},
    )
    # Through the wire format, as refresh() does.
    return LoadedModel.from_artifact(ModelArtifact.from_blobs("v-test", artifact.blobs()))


@pytest.fixture
def cache() -> ModelCache:
    c = ModelCache(aioredis.Redis(), check_interval_s=0)  # never connects: set_model below
    c.set_model(_model())
    return c


def test_known_user_without_new_events_uses_the_trained_vector(cache: ModelCache) -> None:
    model = cache.model
    history = [["v3", 900, 1.0], ["v7", 800, 2.0]]  # before data_until_ms
    scores = cache.score_user("u2", history, k=5)
    want = model.item_factors @ model.user_factors[2]
    want[[3, 7]] = -np.inf
    best = np.argsort(-want)[:5]
    assert list(scores) == [f"v{i}" for i in best]
    assert list(scores.values()) == pytest.approx(want[best].tolist(), rel=1e-5)


def test_new_engagements_and_unknown_users_are_folded_in(cache: ModelCache) -> None:
    model = cache.model
    history = [["v9", 2_000, 2.0], ["v3", 900, 1.0], ["v7", 800, -0.5]]  # v9 is newer than the model
    rows, r = history_ratings(history, model.item_index)
    folded = fold_in(model.item_factors, model.yty, rows, r, 0.1, 2.0)
    for user in ("u2", "someone-new"):
        np.testing.assert_allclose(cache.user_vector(user, history), folded, rtol=1e-6)
    scores = cache.score_user("someone-new", history, k=30)
    assert len(scores) == 27 and not {"v9", "v3", "v7"} & set(scores)  # seen videos left out
    values = list(scores.values())
    assert values == sorted(values, reverse=True)


def test_folded_vector_follows_the_history(cache: ModelCache) -> None:
    first = cache.user_vector("new", [["v1", 5_000, 1.0]]).copy()
    assert np.array_equal(cache.user_vector("new", [["v1", 5_000, 1.0]]), first)  # cached
    second = cache.user_vector("new", [["v2", 6_000, 1.0], ["v1", 5_000, 1.0]])
    assert not np.allclose(first, second)


def test_nothing_to_say_without_a_model_or_a_positive_signal() -> None:
    empty = ModelCache(aioredis.Redis())
    assert empty.score_user("u1", [["v1", 1, 1.0]]) == {}
    c = ModelCache(aioredis.Redis())
    c.set_model(_model())
    assert c.score_user("new", []) == {}
    assert c.score_user("new", [["v1", 5_000, -0.5], ["unknown-video", 5_001, 2.0]]) == {}
    # A known user whose only new signal is negative keeps the trained vector.
    assert len(c.score_user("u1", [["v1", 5_000, -0.5]], k=3)) == 3
