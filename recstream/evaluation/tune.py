"""Parameter search on validation data: coordinate ascent from the served (or library) defaults.

One axis at a time, every value of that axis is tried with the others held at the best so far; a
value replaces the current one only if it gains at least `min_gain` (differences smaller than that are
noise on validation, and the current value is the simpler or cheaper one: the defaults, fewer
iterations). Rounds repeat until one changes nothing.
Far fewer fits than a full grid (sum of the axes' sizes per round instead of their product), and
the starting point is always among the trials, so tuning can only match or beat the defaults on
validation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Trial:
    params: dict[str, Any]
    value: float
    fit_s: float


@dataclass
class Search:
    best: dict[str, Any]
    value: float
    trials: list[Trial] = field(default_factory=list)


def key(params: dict[str, Any]) -> str:
    """One string per parameter set, whatever the order of its keys."""
    return json.dumps(params, sort_keys=True, default=str)


Axes = dict[str | tuple[str, ...], list[Any]]


def coordinate_ascent(
    start: dict[str, Any],
    axes: Axes,
    evaluate: Callable[[dict[str, Any]], tuple[float, float]],
    max_rounds: int = 3,
    min_gain: float = 1e-3,
    max_trials: int | None = None,
) -> Search:
    """`evaluate(params) -> (validation metric, fit seconds)`; higher metric is better. `max_trials`
    caps the fits (the start counts as one): the training job's budget. Axes are tried in the order
    given, so the most promising go first."""
    done: dict[str, Trial] = {}

    def trial(params: dict[str, Any]) -> float | None:
        k = key(params)
        if k not in done:
            if max_trials is not None and len(done) >= max_trials:
                return None
            value, seconds = evaluate(params)
            done[k] = Trial(dict(params), value, seconds)
        return done[k].value

    best = dict(start)
    best_value = trial(best)
    assert best_value is not None
    for _round in range(max_rounds):
        changed = False
        for name, values in axes.items():
            for value in values:
                change = dict(zip(name, value, strict=True)) if isinstance(name, tuple) else {name: value}
                candidate = {**best, **change}
                score = trial(candidate)
                if score is None:  # the budget is spent
                    return Search(best, best_value, list(done.values()))
                if score > best_value + min_gain:
                    best, best_value, changed = candidate, score, True
        if not changed:
            break
    return Search(best, best_value, list(done.values()))
