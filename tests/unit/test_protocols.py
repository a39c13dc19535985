"""The evaluation protocols on tiny hand-made datasets whose right splits are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recstream.evaluation import protocols
from recstream.evaluation.data import Dataset, from_events
from recstream.records import Interaction

# (user, item, ts) in file order; row i is the i-th tuple.
RATINGS = [
    ("a", "x", 1), ("a", "y", 2), ("a", "z", 3),   # r0 r1 r2
    ("b", "x", 4), ("b", "z", 5),                  # r3 r4
    ("c", "x", 6), ("c", "y", 7), ("c", "z", 8),   # r5 r6 r7
    ("d", "x", 9), ("d", "z", 10),                 # r8 r9
    ("e", "z", 11), ("f", "z", 12), ("e", "w", 13),  # r10 r11 r12
]  # fmt: skip


def dataset(rows: list[tuple[str, str, int]]) -> Dataset:
    return from_events(
        Interaction(type="view", user_id=u, video_id=v, ts=ts * 1000, watch_time_ms=60_000)
        for u, v, ts in rows
    )


def rows_of(ds: Dataset, indices: np.ndarray) -> set[tuple[str, str]]:
    return {(ds.user_ids[ds.user[i]], ds.item_ids[ds.item[i]]) for i in indices}


def test_pandas_sample_is_randomstate_permutation() -> None:
    # pandas' DataFrame.sample(frac=1, random_state=42) calls
    # RandomState(42).choice(n, size=n, replace=False), which numpy implements as permutation(n)[:n].
    # The hand-worked splits below use these permutations.
    for n, perm in {1: [0], 2: [1, 0], 3: [0, 1, 2], 4: [1, 3, 0, 2], 6: [0, 1, 5, 2, 4, 3]}.items():
        assert np.random.RandomState(42).choice(n, size=n, replace=False).tolist() == perm
        assert np.random.RandomState(42).permutation(n).tolist() == perm


def test_recommenders_split_by_item_matches_the_hand_worked_split() -> None:
    ds = dataset(RATINGS)
    p = protocols.recommenders(ds, validation_ratio=0.75)  # by item, 0.75, seed 42
    # item x: rows r0 r3 r5 r8, shuffled by [1 3 0 2] -> r3 r8 r0 | r5   (round(3.0) = 3 train)
    # item y: rows r1 r6, shuffled by [1 0] -> r6 r1 |                    (round(1.5) = 2 train)
    # item z: rows r2 r4 r7 r9 r10 r11, shuffled by [0 1 5 2 4 3]
    #         -> r2 r4 r11 r7 | r10 r9         (round(4.5) = 4: Python rounds halves to even)
    # item w: row r12 -> r12 |                                             (round(0.75) = 1 train)
    assert sorted(p.test.test.tolist()) == [5, 9, 10]
    assert sorted(p.test.train.tolist()) == [0, 1, 2, 3, 4, 6, 7, 8, 11, 12]
    # The training rows come back as pandas holds them: each group in its shuffled order.
    assert p.test.train.tolist() == [3, 8, 0, 6, 1, 2, 4, 11, 7, 12]
    # Validation: the same split of the training rows (here at the same ratio), each group in that
    # shuffled order.
    # x: r3 r8 r0 by [0 1 2] -> r3 r8 | r0 (round(2.25) = 2);  y: r6 r1 -> both train;
    # z: r2 r4 r11 r7 by [1 3 0 2] -> r4 r7 r2 | r11;  w: r12 -> train.
    assert sorted(p.validation.test.tolist()) == [0, 11]
    assert sorted(p.validation.train.tolist()) == [1, 2, 3, 4, 6, 7, 8, 12]
    assert rows_of(ds, p.test.test) == {("c", "x"), ("d", "z"), ("e", "z")}


def test_recommenders_validation_holds_out_a_tenth_of_the_training_rows_by_default() -> None:
    # One item with 40 rows: 30 train (round(30.0)); validation keeps round(0.9 * 30) = 27 of them, so
    # the validation fit sees 27 rows (67.5 %) against the final fit's 30 (75 %).
    ds = dataset([(f"u{i}", "x", i + 1) for i in range(40)])
    p = protocols.recommenders(ds)
    assert (len(p.test.train), len(p.test.test)) == (30, 10)
    assert (len(p.validation.train), len(p.validation.test)) == (27, 3)
    assert set(p.validation.train.tolist()) | set(p.validation.test.tolist()) == set(p.test.train.tolist())
    assert p.params["validation_ratio"] == 0.9
    with pytest.raises(ValueError):
        protocols.recommenders(ds, validation_ratio=1.0)


def test_recommenders_validation_folds_are_the_same_carve_out_with_the_next_seeds() -> None:
    ds = dataset([(f"u{i}", "x", i + 1) for i in range(40)])
    p = protocols.recommenders(ds, validation_folds=3)
    assert len(p.validations) == 3 and p.validations[0] == p.validation
    for i, fold in enumerate(p.validations):
        again = protocols.stratified(ds.item, p.test.train, 0.9, 42 + i)
        assert fold.train.tolist() == again.train.tolist() and fold.test.tolist() == again.test.tolist()
        assert set(fold.train.tolist()) | set(fold.test.tolist()) == set(p.test.train.tolist())
    held_out = [set(fold.test.tolist()) for fold in p.validations]
    assert len({frozenset(h) for h in held_out}) == 3  # three different carve-outs
    assert len(protocols.recommenders(ds, validation_folds=1).validations) == 1
    with pytest.raises(ValueError):
        protocols.recommenders(ds, validation_folds=0)


def test_recommenders_split_by_user() -> None:
    ds = dataset(RATINGS)
    p = protocols.recommenders(ds, by="user")
    # a: r0 r1 r2 by [0 1 2] -> r0 r1 | r2;  b: r3 r4 by [1 0] -> both;  c: r5 r6 r7 -> r5 r6 | r7;
    # d: r8 r9 -> both;  e: r10 r12 by [1 0] -> both;  f: r11 -> train.
    assert sorted(p.test.test.tolist()) == [2, 7]
    assert len(p.test.train) + len(p.test.test) == ds.n_rows
    with pytest.raises(ValueError):
        protocols.recommenders(ds, by="video")


def test_leave_one_out_keeps_the_last_rows_and_splits_by_time() -> None:
    # User a: six rows, file order shuffled; two share ts 5 (file order decides: r3 before r5).
    rows = [
        ("a", "i1", 3), ("a", "i2", 1), ("a", "i3", 6), ("a", "i4", 5), ("b", "j1", 1), ("a", "i5", 5),
        ("a", "i6", 2), ("b", "j2", 2),
    ]  # fmt: skip
    ds = dataset(rows)
    p = protocols.leave_one_out(ds, keep_last=4)
    # a by time: i2(1) i6(2) i1(3) i4(5, r3) i5(5, r5) i3(6); the last 4: i1 i4 | i5 (val) | i3 (test)
    assert rows_of(ds, p.test.test) == {("a", "i3")}
    assert rows_of(ds, p.validation.test) == {("a", "i5")}
    assert rows_of(ds, p.validation.train) == {("a", "i1"), ("a", "i4"), ("b", "j1"), ("b", "j2")}
    # The test model trains on the validation row too; rows before the last 4 are dropped entirely.
    assert rows_of(ds, p.test.train) == {("a", "i1"), ("a", "i4"), ("a", "i5"), ("b", "j1"), ("b", "j2")}
    with pytest.raises(ValueError):
        protocols.leave_one_out(ds, keep_last=2)


def test_temporal_cuts_at_a_global_time() -> None:
    ds = dataset([(f"u{i % 3}", f"v{i}", i) for i in range(1, 11)])  # ts 1..10
    p = protocols.temporal(ds, test_fraction=0.2)
    # Sorted times; index round(0.8 * 10) = 8 is ts 9: train ts < 9, test ts >= 9.
    assert sorted(ds.ts[p.test.test] // 1000) == [9, 10]
    assert sorted(ds.ts[p.test.train] // 1000) == list(range(1, 9))
    # Inside training: index round(0.8 * 8) = 6 is ts 7.
    assert sorted(ds.ts[p.validation.test] // 1000) == [7, 8]
    assert set(p.validation.train) | set(p.validation.test) == set(p.test.train)


def test_rows_group_a_view_with_its_actions() -> None:
    events = [
        Interaction(type="view", user_id="a", video_id="x", ts=1000, watch_time_ms=5000, duration_ms=10_000),
        Interaction(type="like", user_id="a", video_id="x", ts=1000),
        Interaction(type="view", user_id="a", video_id="y", ts=2000, watch_time_ms=500, duration_ms=10_000),
    ]
    ds = from_events(events)
    assert ds.n_rows == 2 and ds.row_start.tolist() == [0, 2, 3]
    # view 0.5 + like 1.0; a 0.5 s view is a fast skip (-0.5): a negative row.
    assert ds.weight.tolist() == [1.5, -0.5]
    assert [e.type for e in ds.events_of(np.array([0]))] == ["view", "like"]
