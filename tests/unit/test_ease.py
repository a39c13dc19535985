"""EASE, the evaluation's item-item reference: its closed form against the regressions it stands for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recstream.evaluation import data, protocols, runner
from recstream.evaluation.data import from_events
from recstream.evaluation.models import Context, ease
from recstream.evaluation.models.ease import EASE, gram, weights
from recstream.records import Interaction
from recstream.settings import Settings
from tests.unit.test_evaluation import tiny_movielens


@pytest.mark.parametrize("gain", [1e-9, 1e9])  # pair counts, and BLAS over dense blocks of users
@pytest.mark.parametrize("share", [0.05, 0.6])
def test_gram_counts_each_user_item_once(share: float, gain: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ease, "DENSE_BLOCK", 7)  # several blocks
    monkeypatch.setattr(ease, "GRAM_BLAS_GAIN", gain)
    rng = np.random.default_rng(1)
    x = rng.random((40, 50)) < share
    users, items = np.nonzero(x)
    users, items = (
        np.concatenate([users, users[:5]]),
        np.concatenate([items, items[:5]]),
    )  # repeats count once
    expected = x.T.astype(float) @ x.astype(float)
    assert gram(users, items, 50) == pytest.approx(expected)


def test_weights_are_each_items_ridge_regression_on_the_others() -> None:
    rng = np.random.default_rng(3)
    x = (rng.random((30, 6)) < 0.4).astype(float)
    l2 = 2.5
    b = weights(x.T @ x, l2)
    assert np.diag(b) == pytest.approx(np.zeros(6))
    for j in range(6):
        others = [i for i in range(6) if i != j]
        a = x[:, others]
        # min ||x_j - A b||^2 + l2 ||b||^2, item j not allowed to explain itself.
        expected = np.linalg.solve(a.T @ a + l2 * np.eye(5), a.T @ x[:, j])
        assert b[others, j] == pytest.approx(expected)
    with pytest.raises(ValueError, match="l2"):
        weights(x.T @ x, 0.0)


def test_fit_scores_sum_the_users_positive_items_rows_over_the_head_only() -> None:
    def event(user: str, video: str, ts: int, watch_ms: int) -> Interaction:
        return Interaction(type="view", user_id=user, video_id=video, ts=ts, watch_time_ms=watch_ms)

    # Watching 1 s of a 60 s video is a skip (negative weight): not a positive for EASE.
    events = [
        event("u0", "a", 1, 60_000), event("u0", "b", 2, 60_000), event("u0", "c", 3, 1_000),
        event("u1", "a", 4, 60_000), event("u1", "c", 5, 60_000),
        event("u2", "b", 6, 60_000), event("u2", "c", 7, 60_000), event("u2", "d", 8, 60_000),
    ]  # fmt: skip
    ds = from_events(events)
    negative = ds.weight <= 0
    assert negative.sum() == 1
    rows = np.arange(ds.n_rows)
    fitted = EASE.fit(ds, rows, {"l2": 1.0, "max_items": 3}, Context(Settings()))
    # Three items with the most users (a, b, c: 2 each) are modelled; d (1 user) is not.
    head = [ds.item_ids[i] for i in fitted.head]
    assert head == ["a", "b", "c"]
    x = np.zeros((ds.n_users, 3))
    keep = ~negative & np.isin(ds.item, fitted.head)
    x[ds.user[keep], np.searchsorted(fitted.head, ds.item[keep])] = 1.0
    b = weights(x.T @ x, 1.0)
    scores = fitted.scores(np.arange(ds.n_users))
    assert scores[:, fitted.head] == pytest.approx(x @ b, rel=1e-5)
    assert np.isneginf(scores[:, ds.item_ids.index("d")]).all()


@pytest.mark.parametrize("gain", [1e-9, 1e9])  # summed rows of B, and one matrix product
def test_both_scoring_paths_give_x_times_b(gain: float, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    events = [
        Interaction(type="view", user_id=f"u{u}", video_id=f"v{v}", ts=u * 100 + v, watch_time_ms=60_000)
        for u in range(20)
        for v in rng.choice(30, size=6, replace=False).tolist()
    ]
    ds = from_events(events)
    fitted = EASE.fit(ds, np.arange(ds.n_rows), {"l2": 2.0}, Context(Settings()))
    x = np.zeros((ds.n_users, ds.n_items))
    x[ds.user, ds.item] = 1.0
    expected = x[:, fitted.head] @ weights(x[:, fitted.head].T @ x[:, fitted.head], 2.0)
    monkeypatch.setattr(ease, "SCORE_BLAS_GAIN", gain)
    users = np.array([3, 0, 19])
    assert fitted.scores(users)[:, fitted.head] == pytest.approx(expected[users], rel=1e-4, abs=1e-6)


def test_ease_in_a_run_beats_popularity_on_taste_groups(tmp_path: Path) -> None:
    ds = data.load("movielens", tiny_movielens(tmp_path / "u.data"))
    result = runner.run(
        ds,
        protocols.recommenders(ds),
        ["popularity", "ease"],
        "small",
        Context(Settings(), threads=1),
        log=lambda _: None,
    )
    ndcg = {n: r.per_user["ndcg@10"].mean() for n, r in result.models.items()}
    assert ndcg["ease"] > ndcg["popularity"]
    assert result.models["ease"].params["l2"] in (100.0, 500.0, 300.0)
