"""The `implicit` library's CPU ALS: the outside peer, on the same split and candidates.

Used as it usually is: a binary user x item matrix of positives, confidence alpha * 1 (implicit
multiplies the matrix by alpha and uses it as the confidence itself, with an unscaled lambda).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recstream.evaluation.data import Dataset
from recstream.evaluation.models import Context, FactorScores, GridSize
from recstream.evaluation.tune import Axes

# implicit's own defaults: what "implicit ALS, defaults" means in the report.
DEFAULTS = {"factors": 100, "regularization": 0.01, "alpha": 1.0, "iterations": 15}


class ImplicitALS:
    NAME = "implicit-als"

    @staticmethod
    def start(ctx: Context) -> dict[str, Any]:
        return dict(DEFAULTS)

    @staticmethod
    def axes(size: GridSize, ctx: Context) -> Axes:
        if size == "small":
            return {"regularization": [0.01, 10.0], "alpha": [1.0, 3.0]}
        return {
            ("regularization", "alpha"): [
                (r, a) for r in (0.01, 0.1, 1.0, 10.0, 30.0, 100.0) for a in (1.0, 3.0, 10.0, 40.0)
            ],
            "factors": [32, 64, 100, 128],
            "iterations": [15, 30],
        }

    @staticmethod
    def fit(ds: Dataset, rows: np.ndarray, params: dict[str, Any], ctx: Context) -> FactorScores:
        import scipy.sparse as sp
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        p = {**DEFAULTS, **params}
        positive = rows[ds.weight[rows] > 0]
        matrix = sp.csr_matrix(
            (np.ones(len(positive), dtype=np.float32), (ds.user[positive], ds.item[positive])),
            shape=(ds.n_users, ds.n_items),
        )
        matrix.data[:] = 1.0  # a repeated (user, item) is still one positive
        # implicit parallelises over users itself; BLAS threads on top would oversubscribe the cores.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=int(p["factors"]), regularization=float(p["regularization"]), alpha=float(p["alpha"]),
                iterations=int(p["iterations"]), random_state=42, num_threads=ctx.threads,
                calculate_training_loss=False,
            )  # fmt: skip
            model.fit(matrix, show_progress=False)
        return FactorScores(np.asarray(model.user_factors), np.asarray(model.item_factors))
