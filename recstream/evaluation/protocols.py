"""Evaluation protocols: which rows train, which rows test, and the validation split inside training.

Every protocol returns two splits of row indices: `test` (all training rows / the test rows) and
`validation` (carved out of the training rows only, by the same rule), so parameters are chosen
without ever looking at the test rows.

- `recommenders`: the Microsoft Recommenders benchmark's `python_stratified_split` (ratio 0.75,
  seed 42, stratified by item as the MovieLens benchmark notebook does, or by user). Each group, its
  rows in file order, is shuffled as pandas' `group.sample(frac=1, random_state=42)` does (a fresh
  `numpy.random.RandomState(42).permutation(len(group))`) and its first `round(0.75 * len(group))`
  rows (Python's round: halves go to even) train. Validation is the same split of the training rows
  with a smaller held-out share (`validation_ratio`, 0.9), three times (`validation_folds`; seeds
  42, 43, 44), and a parameter set is valued by its mean over the three. The validation fit then
  sees 67.5 % of the rows against the final fit's 75 %: ALS's best regularisation and confidence
  move with the rows per user, so the fit that chooses them must be close in size to the one that
  serves; and one such fold is too small to tell them apart (`docs/evaluation.md`).
- `leave-one-out`: the MicroLens paper's: each user's last 13 rows by time; the last one tests, the
  second last validates, the rest train (users with fewer than 3 rows only train).
- `temporal`: one global time cut: rows at or after the cut test, the same cut inside training
  validates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recstream.evaluation.data import Dataset

PROTOCOLS = ("recommenders", "leave-one-out", "temporal")


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices
    test: np.ndarray  # row indices


@dataclass(frozen=True)
class Protocol:
    name: str
    test: Split
    validation: Split
    params: dict[str, Any] = field(default_factory=dict)
    more_validation: tuple[Split, ...] = ()
    """Further validation folds (recommenders: the same carve-out with other seeds): a parameter set's
    validation value is its mean over `validations`."""

    @property
    def validations(self) -> tuple[Split, ...]:
        return (self.validation, *self.more_validation)


def _groups(keys: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
    """Rows grouped by key, each group in the order the rows were given."""
    order = np.argsort(keys[rows], kind="stable")
    sorted_rows = rows[order]
    bounds = np.flatnonzero(np.diff(keys[sorted_rows])) + 1
    return np.split(sorted_rows, bounds) if len(rows) else []


def stratified(keys: np.ndarray, rows: np.ndarray, ratio: float, seed: int) -> Split:
    """recommenders' python_stratified_split of `rows` grouped by `keys`. `train` comes back in the
    order pandas would hold it (groups by key, each group in shuffled order), so splitting it again
    (the validation carve-out) sees the rows in the order the library would."""
    train, test = [], []
    for group in _groups(keys, rows):
        shuffled = group[np.random.RandomState(seed).permutation(len(group))]
        cut = round(ratio * len(group))
        train.append(shuffled[:cut])
        test.append(shuffled[cut:])
    empty = np.zeros(0, dtype=np.int64)
    return Split(np.concatenate(train) if train else empty, np.concatenate(test) if test else empty)


def recommenders(
    ds: Dataset,
    by: str = "item",
    ratio: float = 0.75,
    seed: int = 42,
    validation_ratio: float = 0.9,
    validation_folds: int = 3,
) -> Protocol:
    if by not in ("item", "user"):
        raise ValueError(f"stratify by 'item' or 'user', not {by!r}")
    if not 0 < validation_ratio < 1:
        raise ValueError("validation_ratio must be in (0, 1)")
    if validation_folds < 1:
        raise ValueError("validation_folds must be >= 1")
    keys = ds.item if by == "item" else ds.user
    test = stratified(keys, np.arange(ds.n_rows), ratio, seed)
    folds = [stratified(keys, test.train, validation_ratio, seed + i) for i in range(validation_folds)]
    options = {
        "by": by,
        "ratio": ratio,
        "seed": seed,
        "validation_ratio": validation_ratio,
        "validation_folds": validation_folds,
    }
    return Protocol("recommenders", test, folds[0], options, tuple(folds[1:]))


def leave_one_out(ds: Dataset, keep_last: int = 13, min_rows: int = 3) -> Protocol:
    if keep_last < 3 or min_rows < 3:
        raise ValueError("leave-one-out needs at least 3 rows per user (train, validation, test)")
    # Per user, by time; rows with the same time keep file order.
    order = np.lexsort((np.arange(ds.n_rows), ds.ts, ds.user))
    train, val, test, train_only = [], [], [], []
    for rows in _groups(ds.user, order):
        rows = rows[-keep_last:]
        if len(rows) < min_rows:
            train_only.append(rows)
            continue
        train.append(rows[:-2])
        val.append(rows[-2:-1])
        test.append(rows[-1:])
    inner = _cat(train + train_only)
    return Protocol(
        "leave-one-out",
        Split(np.sort(_cat([inner, _cat(val)])), _cat(test)),
        Split(np.sort(inner), _cat(val)),
        {"keep_last": keep_last, "min_rows": min_rows},
    )


def temporal(ds: Dataset, test_fraction: float = 0.2) -> Protocol:
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be in (0, 1)")

    def cut(rows: np.ndarray) -> Split:
        ts = np.sort(ds.ts[rows])
        t_cut = ts[min(len(ts) - 1, round((1 - test_fraction) * len(ts)))]
        return Split(rows[ds.ts[rows] < t_cut], rows[ds.ts[rows] >= t_cut])

    test = cut(np.arange(ds.n_rows))
    return Protocol("temporal", test, cut(test.train), {"test_fraction": test_fraction})


def make(name: str, ds: Dataset, **options: Any) -> Protocol:
    if name == "recommenders":
        return recommenders(ds, **options)
    if name == "leave-one-out":
        return leave_one_out(ds, **options)
    if name == "temporal":
        return temporal(ds, **options)
    raise ValueError(f"unknown protocol {name!r}; one of {', '.join(PROTOCOLS)}")


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
