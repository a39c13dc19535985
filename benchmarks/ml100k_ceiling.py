"""Where the ceiling is on MovieLens-100k (recommenders protocol): what the served default's NDCG@10
could reach with the models recstream trains, and what else was tried for issue 12's 0.50 row.

    .venv/bin/python benchmarks/ml100k_ceiling.py     # ~5 min on 2 cores

The split and folds are `recstream evaluate`'s (`protocols.make("recommenders")`: 75/25 by item, seed
42; validation: three carve-outs at 90 %, seeds 42-44). Nothing here is chosen on test: the component
parameters are those `recstream evaluate ... --protocol recommenders` chose on validation
(`docs/evaluation.md`), and every row reports validation (the mean of the three folds) beside test.
Ranking and metrics are the evaluator's own (`targets.rank`, `metrics.per_user`,
`metrics.debiased_ndcg`, the blend rule's second target).

Rows:

- Spark ALS as chosen, four initialisation seeds, and their scores averaged (a seed ensemble);
- the same at rank 128 and 15 iterations (the runner-up on validation);
- the served blend (`Hybrid`: serving's candidate lists, `scoring.blend`, `scoring.select`) with ALS
  alone, and with item-CF and trending beside it at the weights plain accuracy would consider;
- ALS + EASE (`models.ease`, l2 400), each user's scores max-scaled per source and summed: a blend
  serving does not have (EASE is not a served source);
- the same with EASE's inverse cut to its top r eigenvectors of X^T X (a factor model serving could
  score as one dot product).

Writes benchmarks/results/ml100k_ceiling.md and .json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recstream.evaluation import data, metrics, protocols, runner, targets
from recstream.evaluation.ml100k import fetch
from recstream.evaluation.models import Context
from recstream.evaluation.models.baselines import Trending
from recstream.evaluation.models.ease import EASE
from recstream.evaluation.models.hybrid import Hybrid
from recstream.evaluation.models.itemcf import NO_DECAY_S, ItemCF
from recstream.evaluation.models.spark_als import SparkALS, make_session
from recstream.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# What `recstream evaluate movielens ... --protocol recommenders` (grid full) chose on validation.
ALS = {"rank": 64, "reg_param": 0.2, "alpha": 1.0, "max_iter": 10}
ALS_128 = {"rank": 128, "reg_param": 0.2, "alpha": 1.0, "max_iter": 15}
ITEMCF = {
    "lookback": 50, "recency": 1.0, "neighbours": 200, "half_life_s": NO_DECAY_S, "history_length": 50,
    "symmetric": True, "normalise": "row",
}  # fmt: skip
TRENDING = {"half_life_s": 7_776_000.0}
EASE_L2 = 400.0
SEEDS = (0, 1, 2, 3)
EASE_WEIGHTS = (0.25, 0.5, 1.0)
RANKS = (32, 64, 128, 256)
BLENDS = [(0.0, 0.0), (0.1, 0.0), (0.25, 0.0), (0.1, 0.1), (0.25, 0.1)]  # (item-CF, trending) beside ALS 1


def log(line: str) -> None:
    print(f"[ceiling] {line}", file=sys.stderr, flush=True)


def measure(scores: np.ndarray | Any, t: targets.Targets) -> tuple[float, float]:
    """(NDCG@10, debiased NDCG@10) of a score matrix over all users (or a fitted model's scores)."""
    fn = scores.scores if hasattr(scores, "scores") else (lambda users: scores[users])
    top = targets.rank(fn, t)
    return float(metrics.per_user(top, t.relevant)["ndcg@10"].mean()), metrics.debiased_ndcg(
        top, t.relevant, t.item_rows
    )


def max_scaled(s: np.ndarray) -> np.ndarray:
    s = np.where(np.isfinite(s), s, 0.0)
    return s / np.abs(s).max(axis=1, keepdims=True).clip(1e-12)


def low_rank_ease(ds: data.Dataset, rows: np.ndarray, l2: float, r: int) -> np.ndarray:
    """EASE's scores with (X^T X + l2 I)^-1 kept on its top r eigenvectors (the rest as 1 / l2): user
    vector x_u V_r / (w_r + l2), item vector V_r / diag(P); the diagonal of P from the full inverse."""
    positive = rows[ds.weight[rows] > 0]
    x = np.zeros((ds.n_users, ds.n_items))
    x[ds.user[positive], ds.item[positive]] = 1.0
    w, v = np.linalg.eigh(x.T @ x)
    d = np.einsum("ij,j,ij->i", v, 1.0 / (w + l2), v)  # diag(P)
    top = np.argsort(-w)[:r]
    vr = v[:, top]
    xv = x @ vr
    return -((xv / (w[top] + l2)) @ vr.T + (x - xv @ vr.T) / l2) / d


def main() -> None:
    t_start = time.perf_counter()
    settings = get_settings()
    ds = data.load("movielens", fetch(settings.local_dir / "cache" / "ml-100k"))
    p = protocols.make("recommenders", ds)
    splits = [*p.validations, p.test]
    names = [f"validation {i + 1}" for i in range(len(p.validations))] + ["test"]
    ts = [targets.build(ds, s) for s in splits]
    ctx = Context(
        settings, threads=2, spark_factory=lambda: make_session(settings.local_dir / "evaluate", 2, ds.n_rows)
    )
    rows: list[dict[str, Any]] = []

    def add(label: str, values: list[tuple[float, float]]) -> None:
        val = np.mean(values[:-1], axis=0)
        rows.append(
            {
                "tried": label,
                "validation": float(val[0]),
                "validation_debiased": float(val[1]),
                "test": values[-1][0],
                "test_debiased": values[-1][1],
                "per_split": dict(zip(names, [v[0] for v in values], strict=True)),
            }
        )
        log(f"{label}: validation {val[0]:.4f} (debiased {val[1]:.4f}), test {values[-1][0]:.4f}")

    try:
        for key, params in (("rank 64", ALS), ("rank 128", ALS_128)):
            per_seed = []
            for seed in SEEDS:
                per_split = [
                    SparkALS.fit(ds, s.train, {**params, "seed": seed}, ctx).scores(np.arange(ds.n_users))
                    for s in splits
                ]
                per_seed.append(per_split)
                add(
                    f"Spark ALS {key} {params}, seed {seed}",
                    [measure(a, t) for a, t in zip(per_split, ts, strict=True)],
                )
            averaged = [np.mean([seed[i] for seed in per_seed], axis=0) for i in range(len(splits))]
            add(
                f"Spark ALS {key}, seeds {SEEDS} averaged",
                [measure(a, t) for a, t in zip(averaged, ts, strict=True)],
            )

        # The served blend over the chosen components (Spark ALS at the job's seed, 42, as served).
        sources, als = [], []
        for s, t in zip(splits, ts, strict=True):
            components = {
                "itemcf": ItemCF.fit(ds, s.train, ITEMCF, ctx),
                "spark-als": SparkALS.fit(ds, s.train, ALS, ctx),
                "trending": Trending.fit(ds, s.train, TRENDING, ctx),
            }
            sources.append(Hybrid.sources(components, runner._seen(t)))
            als.append(components["spark-als"].scores(np.arange(ds.n_users)))
        for w_itemcf, w_trending in BLENDS:
            weights = {"w_itemcf": w_itemcf, "w_als": 1.0, "w_trending": w_trending}
            add(
                f"served blend, item-CF {w_itemcf} / ALS 1 / trending {w_trending}",
                [measure(Hybrid.assemble(src, weights, ctx), t) for src, t in zip(sources, ts, strict=True)],
            )

        ease = [EASE.fit(ds, s.train, {"l2": EASE_L2}, ctx).scores(np.arange(ds.n_users)) for s in splits]
        add(f"EASE l2 {EASE_L2:g}", [measure(e, t) for e, t in zip(ease, ts, strict=True)])
        for w in EASE_WEIGHTS:
            add(
                f"ALS + {w} x EASE (max-scaled per user)",
                [
                    measure(max_scaled(a) + w * max_scaled(e), t)
                    for a, e, t in zip(als, ease, ts, strict=True)
                ],
            )
        for r in RANKS:
            lr = [low_rank_ease(ds, s.train, EASE_L2, r) for s in splits]
            add(
                f"ALS + 0.5 x EASE cut to its top {r} eigenvectors",
                [
                    measure(max_scaled(a) + 0.5 * max_scaled(e), t)
                    for a, e, t in zip(als, lr, ts, strict=True)
                ],
            )
    finally:
        ctx.close()

    seconds = time.perf_counter() - t_start
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    meta = {
        "seconds": round(seconds, 1),
        "cores": os.cpu_count(),
        "commit": commit,
        "python": platform.python_version(),
        "protocol": p.params,
        "test_users": len(ts[-1].users),
    }
    lines = [
        "# MovieLens-100k: where the ceiling is (`benchmarks/ml100k_ceiling.py`)",
        "",
        f"Recommenders protocol {json.dumps(p.params)}; {meta['test_users']} test users. Validation: the "
        "mean of the three folds; debiased: `metrics.debiased_ndcg` (the blend rule's second target). "
        f"Commit {commit}, {seconds / 60:.1f} min on {meta['cores']} cores.",
        "",
        "| tried | validation NDCG@10 | validation debiased | test NDCG@10 |",
        "|---|---|---|---|",
        *(
            f"| {r['tried']} | {r['validation']:.4f} | {r['validation_debiased']:.4f} | {r['test']:.4f} |"
            for r in rows
        ),
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ml100k_ceiling.md").write_text("\n".join(lines))
    (RESULTS / "ml100k_ceiling.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print("\n".join(lines))
    log(f"done in {seconds / 60:.1f} min: {RESULTS / 'ml100k_ceiling.md'}")


if __name__ == "__main__":
    main()
