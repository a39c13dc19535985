"""The closed loop's figures: per strategy, each metric's mean over users with its 95 % confidence
interval, and each bucket's difference from the served default.

Users are the unit: one user's impressions are not independent of each other, so every metric is first
computed per user, then averaged over the users of a bucket (`recstream.evaluation.metrics.mean_ci`,
the offline evaluation's interval).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from recstream.evaluation.metrics import mean_ci
from recstream.producers.closed_loop_users import FAST_SKIP_MS, Impression

METRICS: dict[str, Callable[[list[Impression]], float]] = {
    "watch_time_ms": lambda imps: sum(i.watch_ms for i in imps) / len(imps),
    "completion_rate": lambda imps: sum(i.completed for i in imps) / len(imps),
    "like_rate": lambda imps: sum(i.liked for i in imps) / len(imps),
    # Click-through: impressions watched past the fast skip (the feed's "did they take it").
    "click_through": lambda imps: sum(i.watch_ms >= FAST_SKIP_MS for i in imps) / len(imps),
    "repeat_exposure": lambda imps: sum(i.repeat for i in imps) / len(imps),
    "taste": lambda imps: sum(i.taste for i in imps) / len(imps),
    # Shown minus catalogue-average taste, per user: what a strategy adds over chance, with the
    # between-user spread of taste levels taken out (so far tighter intervals than `taste`).
    "taste_lift": lambda imps: sum(i.taste - i.base_taste for i in imps) / len(imps),
}
COMPARED = ("watch_time_ms", "completion_rate", "like_rate", "taste_lift")
SERVED_DEFAULT = "hybrid"


def figures(per_user: list[float]) -> dict[str, float | None]:
    """{"mean", "ci95"} as the summary and the documents hold them: None where undefined (no user;
    one user has no interval)."""
    mean, half = mean_ci(np.asarray(per_user, dtype=float))
    return {"mean": None if math.isnan(mean) else mean, "ci95": None if math.isnan(half) else half}


def difference(a: dict[str, float | None], b: dict[str, float | None]) -> dict[str, Any]:
    """a - b with the half-width of its 95 % interval (independent groups of users: the half-widths add
    in quadrature) and whether the interval excludes 0."""
    if a["mean"] is None or b["mean"] is None or a["ci95"] is None or b["ci95"] is None:
        return {"diff": None, "ci95": None, "significant": None}
    diff, half = a["mean"] - b["mean"], math.hypot(a["ci95"], b["ci95"])
    return {"diff": diff, "ci95": half, "significant": abs(diff) > half}


def compare(per_strategy: dict[str, dict[str, Any]], reference: str = SERVED_DEFAULT) -> dict[str, Any]:
    """Each other bucket against the served default: {strategy: {metric: reference - strategy}}."""
    if reference not in per_strategy:
        return {}
    ref = per_strategy[reference]
    return {
        name: {m: difference(ref[m], row[m]) for m in COMPARED}
        for name, row in per_strategy.items()
        if name != reference
    }


def summarise(impressions: list[Impression]) -> dict[str, dict[str, Any]]:
    """Per strategy: users, impressions, and each metric's per-user mean with its CI."""
    by_strategy: dict[str, dict[str, list[Impression]]] = defaultdict(lambda: defaultdict(list))
    for imp in impressions:
        by_strategy[imp.strategy][imp.user].append(imp)
    out = {}
    for strategy, users in sorted(by_strategy.items()):
        row: dict[str, Any] = {"users": len(users), "impressions": sum(len(v) for v in users.values())}
        for name, metric in METRICS.items():
            row[name] = figures([metric(imps) for imps in users.values()])
        out[strategy] = row
    return out
