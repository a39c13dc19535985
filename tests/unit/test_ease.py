"""EASE, the evaluation's item-item reference: its closed form against the regressions it stands for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recstream.evaluation import data, protocols, runner
from recstream.evaluation.data import from_events
from recstream.evaluation.models import Context
from recstream.evaluation.models.ease import EASE, gram, weights
from recstream.records import Interaction
from recstream.settings import Settings
from tests.unit.test_evaluation import tiny_movielens


def test_gram_counts_each_user_item_once() -> None:
    users = np.array([0, 0, 0, 1, 1, 2])
    items = np.array([0, 1, 1, 1, 2, 2])  # user 0 has item 1 twice: one positive
    x = np.zeros((3, 3))
    x[users, items] = 1.0
    assert gram(users, items, 3) == pytest.approx(x.T @ x)


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
