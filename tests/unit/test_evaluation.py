"""Metrics, candidate masking, tuning, the item-CF replay and the report, on tiny hand-made cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from recstream import scoring
from recstream.evaluation import metrics, protocols, report, runner, targets, tune
from recstream.evaluation.data import from_events
from recstream.evaluation.models import Context, DenseScores
from recstream.evaluation.models.baselines import Popularity
from recstream.evaluation.models.itemcf import ItemCF
from recstream.evaluation.protocols import Split
from recstream.evaluation.tune import coordinate_ascent
from recstream.records import Interaction
from recstream.serving.recommend import FILL_WEIGHT
from recstream.settings import Settings


def view(user: str, video: str, ts_s: int, watch_ms: int = 60_000) -> Interaction:
    return Interaction(type="view", user_id=user, video_id=video, ts=ts_s * 1000, watch_time_ms=watch_ms)


def test_metrics_worked_by_hand() -> None:
    # User 0: relevant {1, 2}; ranked 1, 9, 2, ... -> hits at ranks 1 and 3.
    # User 1: relevant {7}; never ranked.  User 2: relevant {5} at rank 15.
    top = np.array([[1, 9, 2] + list(range(10, 27)),
                    list(range(30, 50)),
                    list(range(60, 74)) + [5] + list(range(80, 85))])  # fmt: skip
    m = metrics.per_user(top, [np.array([1, 2]), np.array([7]), np.array([5])])
    ndcg0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx([ndcg0, 0, 0])
    assert m["ndcg@20"] == pytest.approx([ndcg0, 0, 1 / math.log2(16)])
    assert m["hr@10"].tolist() == [1, 0, 0] and m["hr@20"].tolist() == [1, 0, 1]
    assert m["recall@10"].tolist() == [1, 0, 0]
    assert m["precision@10"].tolist() == [0.2, 0, 0]
    assert m["map"] == pytest.approx([(1 / 1 + 2 / 3) / 2, 0, 0])  # divided by |relevant| = 2
    mean, ci = metrics.mean_ci(np.array([0.0, 1.0, 0.5]))
    assert mean == pytest.approx(0.5) and ci == pytest.approx(1.96 * 0.5 / math.sqrt(3))


def test_debiased_ndcg_worked_by_hand() -> None:
    # Item 1 was seen in 99 training rows (weight 1/10 at power 0.5), item 2 in 3 (1/2), item 7 in none (1).
    rows = np.zeros(100, dtype=np.int64)
    rows[1], rows[2] = 99, 3
    top = np.array([[1, 9, 2] + list(range(10, 17)), list(range(30, 40))])
    relevant = [np.array([1, 2]), np.array([7])]
    d = 1 / np.log2(np.arange(2, 12))
    user0 = (0.1 * d[0] + 0.5 * d[2]) / (0.5 * d[0] + 0.1 * d[1])  # ideal: the rarer item first
    expected = (0.3 * user0 + 1.0 * 0.0) / (0.3 + 1.0)  # users weighted by their mean item weight
    assert metrics.debiased_ndcg(top, relevant, rows, power=0.5) == pytest.approx(expected)
    # A hit on a rare video counts for more than a hit on a popular one, everything else equal.
    assert metrics.debiased_ndcg(np.array([[2, 1]]), [np.array([1, 2])], rows, k=1) > metrics.debiased_ndcg(
        np.array([[1, 2]]), [np.array([1, 2])], rows, k=1
    )
    # power 0: plain NDCG@k averaged over users.
    plain = metrics.per_user(np.pad(top, ((0, 0), (0, 10)), constant_values=99), relevant)["ndcg@10"].mean()
    assert metrics.debiased_ndcg(top, relevant, rows, power=0.0) == pytest.approx(plain)


def test_targets_mask_seen_and_unknown_items_and_pad() -> None:
    events = [
        view("a", "x", 1),
        view("a", "y", 2),
        view("b", "x", 3),
        view("c", "z", 4),
        view("b", "z", 5),
        view("a", "z", 6),
        view("b", "new", 7),
    ]
    ds = from_events(events)
    split = Split(train=np.array([0, 1, 2, 3]), test=np.array([4, 5, 6]))
    t = targets.build(ds, split)
    # a: trained on x, y; relevant z.  b: trained on x; relevant z and `new` (no training row: not a
    # candidate, but still relevant: the ideal DCG counts it).  c: nothing to find, not evaluated.
    assert t.users.tolist() == [0, 1]
    assert [ds.item_ids[i] for i in t.relevant[1]] == ["z", "new"]
    assert t.n_candidates == 3
    everything_high = DenseScores(np.array([1.0, 2.0, 3.0, 100.0]))  # x y z new
    top = targets.rank(everything_high.scores, t, k=3)
    # a: only z is left; b: z then y; `new` never shows; the rest is padding.
    assert top.tolist() == [[2, -1, -1], [2, 1, -1]]
    assert metrics.coverage(top, t.n_candidates, k=3) == pytest.approx(2 / 3)


def test_coordinate_ascent_starts_at_the_defaults_and_needs_a_real_gain() -> None:
    def value(p: dict) -> tuple[float, float]:
        return -((p["a"] - 3) ** 2) - abs(p["b"]) * 1e-4, 0.0  # b only matters below min_gain

    search = coordinate_ascent({"a": 0, "b": 1}, {"a": [0, 1, 2, 3, 4], "b": [0, 1]}, value)
    assert search.best == {"a": 3, "b": 1}  # b=0 gains 1e-4 < min_gain: the start value stays
    assert search.trials[0].params == {"a": 0, "b": 1}
    assert len({json.dumps(t.params, sort_keys=True) for t in search.trials}) == len(search.trials)


def test_the_blend_rule_keeps_the_accuracy_floor_then_takes_the_least_popularity_leaning() -> None:
    a, b, c = {"w_itemcf": 0.0}, {"w_itemcf": 0.5}, {"w_itemcf": 2.0}
    k = {name: tune.key(w) for name, w in zip("abc", (a, b, c), strict=True)}
    accuracy = {k["a"]: 0.050, k["b"]: 0.061, k["c"]: 0.060}
    debiased = {k["a"]: 0.030, k["b"]: 0.020, k["c"]: 0.025}
    # a is the most debiased but below the best single source's accuracy: c, the most debiased above it.
    assert runner.pick_weighting([a, b, c], accuracy, debiased, floor=0.059) == c
    # Equal debiased values above the floor: the first tried.
    assert runner.pick_weighting([a, b, c], accuracy, {**debiased, k["b"]: 0.025}, floor=0.059) == b
    # Nothing reaches the floor (weights pinned by the operator): the most accurate.
    assert runner.pick_weighting([a, b, c], accuracy, debiased, floor=0.07) == b
    # A single source's own weighting is the floor: taken when it is the most debiased.
    assert runner.pick_weighting([a, b, c], accuracy, debiased, floor=0.050) == a
    assert runner.single_source("itemcf") == {"w_itemcf": 1.0, "w_als": 0.0, "w_trending": FILL_WEIGHT}
    assert runner.single_source("trending") == {"w_itemcf": 0.0, "w_als": 0.0, "w_trending": 1.0}


def test_tuning_hands_the_blend_the_chosen_parameters_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    # x=1 scores 0.0005 above the start, less than min_gain: the search keeps x=0, so the fits handed
    # on (the hybrid's validation components) must be x=0's, one per fold, not the highest-valued x=1's.
    fits: list[dict] = []

    class Model:
        @staticmethod
        def start(ctx: Context) -> dict:
            return {"x": 0}

        @staticmethod
        def axes(size: str, ctx: Context) -> dict:
            return {"x": [0, 1]}

        @staticmethod
        def fit(ds: object, rows: np.ndarray, params: dict, ctx: Context) -> dict:
            fits.append(dict(params))
            return dict(params)

    value = {0: 0.2, 1: 0.2005}
    monkeypatch.setattr(
        runner, "_measure", lambda f, t: ({runner.TUNE_METRIC: np.array([value[f["x"]]])}, None)
    )
    rows = np.arange(4)
    protocol = protocols.Protocol("p", Split(rows, rows), Split(rows, rows), {}, (Split(rows, rows),))
    search, _s, fitted = runner._tune(
        "m", Model, "full", False, None, protocol, [None, None], Context(Settings()), print
    )
    assert search.best == {"x": 0}
    assert fitted == [{"x": 0}, {"x": 0}]
    assert fits[-2:] == [{"x": 0}, {"x": 0}]  # refitted after the search, on each fold


def test_itemcf_replay_is_the_agents_functions() -> None:
    # a watches x then y; b watches x: b's item-CF candidates come from x's neighbour y.
    ds = from_events([view("a", "x", 1), view("a", "y", 2), view("b", "x", 3)])
    ctx = Context(Settings())
    fitted = ItemCF.fit(ds, np.arange(ds.n_rows), {"half_life_s": 1e12, "symmetric": False}, ctx)
    s, eng = ctx.settings, scoring.EngagementParams(ctx.settings.completion_ratio, ctx.settings.fast_skip_ms)
    # By hand, with the same functions: a's history before y is [x]; the pair x -> y; one batch.
    history = scoring.update_history(
        [], "x", 1000, scoring.engagement_weight(view("a", "x", 1), eng), s.history_length
    )
    pairs = scoring.covisit_pairs(
        history, "y", scoring.engagement_weight(view("a", "y", 2), eng), s.covisit_lookback, s.covisit_recency
    )
    assert pairs == [("x", "y", 1.0)]
    merged = scoring.merge_neighbours({}, [("y", 1.0)], 3000, 1e12, s.neighbours_per_video)
    b_history = scoring.update_history([], "x", 3000, 1.0, s.history_length)
    expected = scoring.itemcf_scores(
        b_history, {"x": scoring.normalise_neighbours(merged)}, s.covisit_recency, s.covisit_lookback
    )
    assert fitted.candidates(ds.user_ids.index("b")) == expected == {"y": (1.0, "x")}
    # Directional: nothing follows y, so a (last watched y, x before it) gets x's neighbour y only,
    # which is seen; symmetric pairs make y -> x as well.
    sym = ItemCF.fit(ds, np.arange(ds.n_rows), {"half_life_s": 1e12, "symmetric": True}, ctx)
    assert set(sym.neighbours["y"]) == {"x"} and "y" not in fitted.neighbours


def tiny_movielens(path: Path) -> Path:
    """A u.data-style file: two taste groups of users over two groups of items."""
    rng = np.random.default_rng(0)
    lines = []
    for u in range(40):
        group = u % 2
        items = rng.choice(np.arange(group * 30, group * 30 + 30), size=12, replace=False)
        for n, i in enumerate(items):
            lines.append(f"{u + 1}\t{i + 1}\t{int(rng.integers(1, 6))}\t{880000000 + u * 100 + n}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_runner_and_report_on_a_tiny_dataset(tmp_path: Path) -> None:
    from recstream.evaluation import data

    ds = data.load("movielens", tiny_movielens(tmp_path / "u.data"))
    p = protocols.recommenders(ds)
    result = runner.run(
        ds,
        p,
        ["popularity", "itemcf", "implicit-als"],
        "small",
        Context(Settings(), threads=1),
        log=lambda _line: None,
    )
    ndcg = {n: r.per_user["ndcg@10"].mean() for n, r in result.models.items()}
    # Two disjoint taste groups: learning from co-occurrence beats global popularity.
    assert ndcg["itemcf"] > ndcg["popularity"] and ndcg["implicit-als"] > ndcg["popularity"]
    pop = Popularity.fit(ds, p.test.train, {}, Context(Settings()))
    manual = metrics.per_user(targets.rank(pop.scores, result.test), result.test.relevant)["ndcg@10"]
    assert result.models["popularity"].per_user["ndcg@10"] == pytest.approx(manual)
    # The validation value is the mean over the protocol's folds, each fitted on its own rows.
    per_fold = []
    for split in p.validations:
        t = targets.build(ds, split)
        fitted = Popularity.fit(ds, split.train, {}, Context(Settings()))
        per_fold.append(metrics.per_user(targets.rank(fitted.scores, t), t.relevant)["ndcg@10"].mean())
    assert len(per_fold) == 3 and len(set(per_fold)) > 1
    assert result.models["popularity"].validation == pytest.approx(np.mean(per_fold))

    payload = report.payload(ds, result, {"command": "recstream evaluate movielens u.data"})
    json_path, html_path = report.write(tmp_path / "out", payload)
    saved = json.loads(json_path.read_text())
    assert set(saved["models"]) == {"popularity", "itemcf", "implicit-als"}
    assert saved["models"]["itemcf"]["metrics"]["ndcg@10"]["mean"] == pytest.approx(ndcg["itemcf"], abs=1e-6)
    assert saved["protocol"]["test_users"] == len(result.test.users)
    assert sum(b["users"] for b in saved["buckets"]) == len(result.test.users)
    page = html_path.read_text()
    assert page.count("<svg") >= 4 and "implicit-als" in page and "<script" not in page


def test_the_docs_table_is_written_between_its_markers(tmp_path) -> None:  # noqa: ANN001
    from recstream.evaluation.report import update_docs

    metric = {"mean": 0.5, "ci95": 0.01}
    data = {
        "created_at": "2026-12-01T00:00:00Z",
        "command": "recstream evaluate movielens x",
        "grid": "full",
        "dataset": {"name": "ml-100k"},
        "protocol": {"name": "recommenders", "test_users": 943, "candidates": 1682},
        "models": {
            "hybrid": {
                "metrics": {
                    k: metric
                    for k in ("ndcg@10", "ndcg@20", "hr@10", "hr@20", "recall@10", "precision@10", "map")
                },
                "coverage@10": 0.2,
                "fit_s": 1.0,
                "tune_s": 2.0,
                "trials": [{}],
                "params": {"w_als": 4.0},
            }
        },
    }
    doc = tmp_path / "evaluation.md"
    doc.write_text("# Evaluation\n\nbefore\n\nafter\n")
    assert update_docs(doc, data) == "ml-100k-recommenders"
    first = doc.read_text()
    assert "| `hybrid` (**served default**) | 0.500 ± 0.010 |" in first and first.count("<!-- evaluate:") == 1
    data["models"]["hybrid"]["metrics"]["ndcg@10"] = {"mean": 0.51, "ci95": 0.01}
    update_docs(doc, data)  # rewritten in place, not appended again
    second = doc.read_text()
    assert "0.510 ± 0.010" in second and "0.500 ± 0.010" not in second and second.count("<!-- evaluate:") == 1
    assert second.startswith("# Evaluation\n\nbefore\n\nafter\n")
