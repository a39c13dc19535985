"""Ranking metrics, the quality gate and the training parameters (pure Python, no Spark)."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from recstream.settings import Settings
from recstream.training.evaluate import ranking_metrics, top_k
from recstream.training.params import TrainParams, add_param_arguments, params_from_args
from recstream.training.publish import gate


def test_top_k_best_first_ties_by_index() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9, -np.inf], [3, 2, 1, 0, 5]], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [[1, 3, 2], [4, 0, 1]]


def test_ranking_metrics_by_hand() -> None:
    # 6 items; the scores rank them 0 > 1 > 2 > 3 > 4 > 5 for both users.
    scores = np.tile(np.arange(6, 0, -1, dtype=np.float32), (2, 1))
    users = np.array([0, 1])
    seen = [[0], []]  # user 0 saw item 0: ranking 1, 2, 3
    relevant = [[2, 5], [0]]  # user 0: hit at rank 2; user 1: hit at rank 1
    m = ranking_metrics(lambda u: scores[u], users, seen, relevant, k=3)
    d = [1 / math.log2(i + 2) for i in range(3)]
    assert m["ndcg@3"] == pytest.approx(((d[1] / (d[0] + d[1])) + 1.0) / 2, abs=1e-6)
    assert m["recall@3"] == pytest.approx((1 / 2 + 1) / 2, abs=1e-6)
    assert m["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2, abs=1e-6)
    assert m["map@3"] == pytest.approx(((1 / 2) / 2 + 1.0) / 2, abs=1e-6)


def test_gate() -> None:
    active = {"_id": "old", "metrics": {"ndcg@10": 0.40}}
    assert gate({"ndcg@10": 0.39}, active, "ndcg@10", 0.05).passed  # within the margin
    refused = gate({"ndcg@10": 0.37}, active, "ndcg@10", 0.05)
    assert not refused.passed and refused.active_version == "old" and "0.3700" in refused.reason
    assert gate({"ndcg@10": 0.37}, active, "ndcg@10", 0.05, force=True).passed
    assert gate({"ndcg@10": 0.01}, None, "ndcg@10", 0.05).passed  # nothing to compare with
    assert not gate({}, active, "ndcg@10", 0.05).passed  # not evaluated: not activated
    # Popularity on the same test slice is a floor for every model, the first one included.
    below = gate({"ndcg@10": 0.20}, None, "ndcg@10", 0.05, baseline={"ndcg@10": 0.21})
    assert (
        not below.passed
        and below.reason == "ndcg@10 0.2000 does not beat popularity 0.2100 on the test slice"
    )
    assert not gate({"ndcg@10": 0.21}, None, "ndcg@10", 0.05, baseline={"ndcg@10": 0.21}).passed  # a tie
    assert gate({"ndcg@10": 0.22}, None, "ndcg@10", 0.05, baseline={"ndcg@10": 0.21}).passed
    assert gate({"ndcg@10": 0.20}, None, "ndcg@10", 0.05, force=True, baseline={"ndcg@10": 0.21}).passed
    above_pop_below_active = gate({"ndcg@10": 0.30}, active, "ndcg@10", 0.05, baseline={"ndcg@10": 0.21})
    assert not above_pop_below_active.passed and "active 0.4000" in above_pop_below_active.reason


def test_flags_override_defaults_and_settings_fill_the_engagement_definition() -> None:
    parser = argparse.ArgumentParser()
    add_param_arguments(parser)
    params = params_from_args(
        parser.parse_args(["--rank", "8", "--reg-param", "0.2"]),
        Settings(fast_skip_ms=1500, train_tune_trials=3),
    )
    assert (params.rank, params.reg_param, params.fast_skip_ms, params.tune_trials) == (8, 0.2, 1500, 3)
    assert params.alpha == TrainParams().alpha
    assert (
        params_from_args(parser.parse_args(["--tune-trials", "1"]), Settings(train_tune_trials=3)).tune_trials
        == 1
    )
    with pytest.raises(ValueError, match="tune_trials"):
        TrainParams(tune_trials=0)
