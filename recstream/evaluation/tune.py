"""Parameter search on validation data: coordinate ascent from the served (or library) defaults.

One axis at a time, every value of that axis is tried with the others held at the best so far; the
best value stays (ties keep the earlier, simpler choice). Rounds repeat until one changes nothing.
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


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def coordinate_ascent(
    start: dict[str, Any],
    axes: dict[str, list[Any]],
    evaluate: Callable[[dict[str, Any]], tuple[float, float]],
    max_rounds: int = 3,
) -> Search:
    """`evaluate(params) -> (validation metric, fit seconds)`; higher metric is better."""
    done: dict[str, Trial] = {}

    def trial(params: dict[str, Any]) -> float:
        key = _key(params)
        if key not in done:
            value, seconds = evaluate(params)
            done[key] = Trial(dict(params), value, seconds)
        return done[key].value

    best = dict(start)
    best_value = trial(best)
    for _round in range(max_rounds):
        changed = False
        for name, values in axes.items():
            for value in values:
                candidate = {**best, name: value}
                score = trial(candidate)
                if score > best_value + 1e-9:
                    best, best_value, changed = candidate, score, True
        if not changed:
            break
    return Search(best, best_value, list(done.values()))
