"""EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): the closed-form
item-item model, a reference beside the served default, never served.

Each item's score for a user is a weighted sum over the user's positive training items, B learned by
ridge regression of every item's column on all the others with a zero diagonal (an item may not
explain itself):

    G = X^T X + l2 * I,  P = G^-1,  B = -P / diag(P) (column-wise),  diag(B) = 0,  score = x_u B

X is the binary user x item matrix of positive training rows. EASE is one of the strongest simple
models (on par with tuned ALS and VAEs: Steck 2019; Rendle et al. 2021), so the report says how far the
served default is from what a dense item-item model does on the same split.

The inverse is items x items: only the `max_items` items engaged by the most users are modelled (the
rest score -inf, never recommended). At 10,000 items each float64 matrix is 800 MB (a few are held at
once) and the inverse takes ~30 s on 2 cores (measured); a platform's catalogue, retrained every few
minutes, would not fit that, which is why serving does not use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recstream.evaluation.data import Dataset
from recstream.evaluation.models import Context, GridSize
from recstream.evaluation.tune import Axes

DEFAULTS = {"l2": 300.0, "max_items": 10_000}
PAIR_CHUNK = 20_000_000  # co-occurrence pairs counted per bincount (160 MB of int64 indices)
DENSE_BLOCK = 2048  # users per dense block of X (dense data)
GRAM_BLAS_GAIN = 500
SCORE_BLAS_GAIN = 10
"""How many more multiply-adds per second a BLAS product does than counting pairs (`gram`: measured
~660x, 1,682 items) or summing gathered rows of B (`scores`: ~9x at 1,682 items, ~19x at 5,000) on the
2-core machine: the dense path is taken when its work, divided by this, is the smaller."""


@dataclass(frozen=True)
class FittedEASE:
    n_items: int
    head: np.ndarray  # dataset item index of each modelled item
    weights: np.ndarray  # B over the head items (float32)
    indptr: np.ndarray  # per dataset user: its positive head items are columns[indptr[u]:indptr[u + 1]]
    columns: np.ndarray  # head positions

    def scores(self, users: np.ndarray) -> np.ndarray:
        out = np.full((len(users), self.n_items), -np.inf)
        n = len(self.head)
        starts, stops = self.indptr[users], self.indptr[users + 1]
        if int((stops - starts).sum()) * SCORE_BLAS_GAIN > len(users) * n:
            # Users with many items each (dense data): one matrix product beats summing rows of B.
            x = np.zeros((len(users), n), dtype=np.float32)
            for row, (a, b) in enumerate(zip(starts.tolist(), stops.tolist(), strict=True)):
                x[row, self.columns[a:b]] = 1.0
            out[:, self.head] = x @ self.weights
            return out
        head_scores = np.zeros((len(users), n), dtype=np.float64)
        for row, (a, b) in enumerate(zip(starts.tolist(), stops.tolist(), strict=True)):
            if b > a:
                head_scores[row] = self.weights[self.columns[a:b]].sum(axis=0)
        out[:, self.head] = head_scores
        return out


def gram(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """X^T X of the binary matrix with a 1 at each (users[i], items[i]) (duplicates count once): the
    co-occurrence counts. Sparse data: from each user's item pairs (sum of |items of u|^2 work); data
    where users hold a sizeable share of the items each (KuaiRec's small matrix: 99.6 % dense): BLAS
    over dense blocks of users (users x items^2 work, at BLAS speed)."""
    pairs = np.unique(users.astype(np.int64) * n_items + items.astype(np.int64))
    users, items = pairs // n_items, pairs % n_items
    bounds = np.flatnonzero(np.diff(users)) + 1
    groups = np.split(items, bounds) if len(items) else []
    pair_work = sum(len(g) ** 2 for g in groups)
    if pair_work * GRAM_BLAS_GAIN > len(groups) * n_items * n_items:
        g = np.zeros((n_items, n_items), dtype=np.float64)
        for start in range(0, len(groups), DENSE_BLOCK):
            x = np.zeros((len(groups[start : start + DENSE_BLOCK]), n_items), dtype=np.float64)
            for row, group in enumerate(groups[start : start + DENSE_BLOCK]):
                x[row, group] = 1.0
            g += x.T @ x
        return g
    counts = np.zeros(n_items * n_items, dtype=np.int64)
    pending: list[np.ndarray] = []
    size = 0
    for group in groups:
        flat = (group[:, None] * n_items + group[None, :]).ravel()
        pending.append(flat)
        size += len(flat)
        if size >= PAIR_CHUNK:
            counts += np.bincount(np.concatenate(pending), minlength=n_items * n_items)
            pending, size = [], 0
    if pending:
        counts += np.bincount(np.concatenate(pending), minlength=n_items * n_items)
    return counts.reshape(n_items, n_items).astype(np.float64)


def weights(g: np.ndarray, l2: float) -> np.ndarray:
    """EASE's B from the Gram matrix: the closed form of the zero-diagonal ridge regression."""
    if l2 <= 0:
        raise ValueError("l2 must be > 0 (the Gram matrix of a sparse X is singular)")
    g = g.copy()
    g[np.diag_indices_from(g)] += l2
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


class EASE:
    NAME = "ease"

    @staticmethod
    def start(ctx: Context) -> dict[str, Any]:
        return dict(DEFAULTS)

    @staticmethod
    def axes(size: GridSize, ctx: Context) -> Axes:
        if size == "small":
            return {"l2": [100.0, 500.0]}
        return {"l2": [50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0, 2000.0]}

    @staticmethod
    def fit(ds: Dataset, rows: np.ndarray, params: dict[str, Any], ctx: Context) -> FittedEASE:
        p = {**DEFAULTS, **params}
        positive = rows[ds.weight[rows] > 0]
        users, items = ds.user[positive], ds.item[positive]
        # The most engaged items (distinct users), ties to the lower index.
        distinct = np.unique(users.astype(np.int64) * ds.n_items + items)
        per_item = np.bincount(distinct % ds.n_items, minlength=ds.n_items)
        engaged = np.flatnonzero(per_item)
        head = np.sort(engaged[np.argsort(-per_item[engaged], kind="stable")[: int(p["max_items"])]])
        position = np.full(ds.n_items, -1, dtype=np.int64)
        position[head] = np.arange(len(head))
        keep = position[items] >= 0
        users, columns = users[keep], position[items[keep]]
        n = len(head)
        b = weights(gram(users, columns, n), float(p["l2"])).astype(np.float32) if n else np.zeros((0, 0))
        pairs = np.unique(users.astype(np.int64) * max(n, 1) + columns)
        indptr = np.searchsorted(pairs // max(n, 1), np.arange(ds.n_users + 1))
        return FittedEASE(ds.n_items, head, b, indptr, pairs % max(n, 1))
