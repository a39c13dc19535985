"""The models `recstream evaluate` compares. Each module has NAME, `grid(size)` (the parameter sets
tried on validation) and `fit(ds, rows, params, ctx) -> Fitted` (train on rows only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from recstream.evaluation.data import Dataset
from recstream.settings import Settings

GridSize = str  # "small" (tests, quick looks) or "full"


class Fitted(Protocol):
    def scores(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) scores, higher is better (-inf: never recommend)."""
        ...


@dataclass
class Context:
    """What fits share: the settings (serving's parameters), threads, a lazily started Spark."""

    settings: Settings
    threads: int = 2
    replay_batch: int = 10_000
    """Events per replayed agent batch. The agents take up to `batch_size` (5,000) at a time; a larger
    batch only merges neighbour lists less often (measured on ML-100k: NDCG@10 within 0.001 of
    2,000, a third faster)."""
    max_trials: int | None = None
    """Most fits one model's parameter search may make (None: the whole grid's coordinate ascent)."""
    starts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Start parameters per model, over its own (the training job's flags for spark-als)."""
    spark_factory: Callable[[], Any] | None = None
    _spark: Any = field(default=None, repr=False)
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def spark(self) -> Any:
        if self._spark is None:
            if self.spark_factory is None:
                raise RuntimeError("no Spark session factory configured")
            self._spark = self.spark_factory()
        return self._spark

    def close(self) -> None:
        if self._spark is not None:
            self._spark.stop()
            self._spark = None


@dataclass(frozen=True)
class DenseScores:
    """A fitted model whose scores are one vector for everyone (popularity, trending)."""

    vector: np.ndarray

    def scores(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.vector, (len(users), len(self.vector)))


@dataclass(frozen=True)
class FactorScores:
    """A matrix-factorisation model: score = user factor . item factor (zero rows for the unknown)."""

    user_factors: np.ndarray
    item_factors: np.ndarray

    def scores(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T


FitFn = Callable[[Dataset, np.ndarray, dict[str, Any], Context], Fitted]
