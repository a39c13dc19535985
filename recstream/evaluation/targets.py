"""What every model is scored against on one split: the same users, candidates and relevant items.

- candidates: the items with at least one training row (a model can know nothing else), minus each
  user's own training items;
- users: those with a training row and at least one relevant item;
- relevant: the user's positive test items (summed engagement > 0) that are not among their training
  items (the task is ranking unseen items; a repeat of a training item could never be shown).

Relevant items outside the candidates (new in the test period) stay in the ideal DCG and recall's
denominator: a model is charged for what it could not know, the same for every model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recstream.evaluation import metrics
from recstream.evaluation.data import Dataset
from recstream.evaluation.protocols import Split

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""User indices -> (len(users), n_items) scores, higher is better."""


@dataclass(frozen=True)
class Targets:
    users: np.ndarray  # user indices evaluated
    seen: list[np.ndarray]  # per user: training items (masked)
    relevant: list[np.ndarray]  # per user: items sought
    candidate: np.ndarray  # bool (n_items,): items with training rows
    train_rows: np.ndarray  # per evaluated user: training rows (activity buckets)
    item_rows: np.ndarray  # per item: training rows (its exposure, for `metrics.debiased_ndcg`)

    @property
    def n_candidates(self) -> int:
        return int(self.candidate.sum())


def build(ds: Dataset, split: Split) -> Targets:
    train_user, train_item = ds.user[split.train], ds.item[split.train]
    candidate = np.zeros(ds.n_items, dtype=bool)
    candidate[train_item] = True
    seen_of = _items_by_user(train_user, train_item, ds.n_users)
    positive = split.test[ds.weight[split.test] > 0]
    wanted = _items_by_user(ds.user[positive], ds.item[positive], ds.n_users)
    users, seen, relevant, activity = [], [], [], []
    counts = np.bincount(train_user, minlength=ds.n_users)
    for u in range(ds.n_users):
        rel = np.setdiff1d(wanted[u], seen_of[u]) if len(wanted[u]) else wanted[u]
        if counts[u] and len(rel):
            users.append(u)
            seen.append(seen_of[u])
            relevant.append(rel)
            activity.append(counts[u])
    return Targets(
        np.asarray(users, dtype=np.int64),
        seen,
        relevant,
        candidate,
        np.asarray(activity, dtype=np.int64),
        np.bincount(train_item, minlength=ds.n_items),
    )


def rank(score_fn: ScoreFn, targets: Targets, k: int = metrics.K_MAX, batch: int = 1024) -> np.ndarray:
    """Each evaluated user's top-k candidates (the same masking for every model); -1 pads a list
    when fewer than k candidates are left."""
    out = np.zeros((len(targets.users), k), dtype=np.int64)
    for start in range(0, len(targets.users), batch):
        stop = min(start + batch, len(targets.users))
        scores = np.array(score_fn(targets.users[start:stop]), dtype=np.float64, copy=True)
        scores[:, ~targets.candidate] = -np.inf
        for row in range(stop - start):
            scores[row, targets.seen[start + row]] = -np.inf
        top = metrics.top_k(scores, k)
        # Fewer than k candidates left: the filler is masked items, which must never count as hits.
        top[~np.isfinite(np.take_along_axis(scores, top, axis=1))] = -1
        out[start:stop] = top
    return out


def _items_by_user(users: np.ndarray, items: np.ndarray, n_users: int) -> list[np.ndarray]:
    order = np.argsort(users, kind="stable")
    bounds = np.searchsorted(users[order], np.arange(n_users + 1))
    sorted_items = items[order]
    return [np.unique(sorted_items[bounds[u] : bounds[u + 1]]) for u in range(n_users)]
