"""One evaluation run: for every model, tune on validation, refit on the training split, rank the same
candidates for the same test users, and measure.

Nothing a model sees comes from the test rows: parameters are chosen on the validation split (carved
out of the training rows by the protocol), then the chosen parameters are refitted on all training
rows. The hybrid blends the tuned components (item-CF, Spark ALS, trending): on validation, the
components fitted on the validation split; on test, the refitted ones.

The training job runs the same code on the most recent slice of the log (`recstream.training.tuning`):
its item-CF and trending are the streaming agents' (`fixed`: the served settings, not searched), ALS
gets a trial budget (`Context.max_trials`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recstream.evaluation import metrics, targets, tune
from recstream.evaluation.data import Dataset
from recstream.evaluation.models import Context, Fitted
from recstream.evaluation.models.baselines import Popularity, Trending
from recstream.evaluation.models.ease import EASE
from recstream.evaluation.models.hybrid import COMPONENTS, WEIGHTS, Hybrid, Sources, settings_weights
from recstream.evaluation.models.implicit_als import ImplicitALS
from recstream.evaluation.models.itemcf import ItemCF
from recstream.evaluation.models.spark_als import SparkALS
from recstream.evaluation.protocols import Protocol, Split
from recstream.evaluation.tune import Search, Trial, coordinate_ascent
from recstream.serving.recommend import FILL_WEIGHT

BASE_MODELS = {m.NAME: m for m in (Popularity, Trending, ItemCF, SparkALS, ImplicitALS, EASE)}
HYBRIDS = (Hybrid.NAME, Hybrid.DEFAULTS)
DEFAULTS_SUFFIX = "-defaults"  # e.g. implicit-als-defaults: the start parameters, untuned
TUNE_METRIC = "ndcg@10"
DEBIASED = "debiased-ndcg@10"
"""The blend search's other objective: `metrics.debiased_ndcg` (the training job's, see training/tuning.py)."""
Log = Callable[[str], None]


def model_names() -> list[str]:
    names = [*BASE_MODELS, *HYBRIDS]
    return names + [n + DEFAULTS_SUFFIX for n in BASE_MODELS if n != "popularity"]


@dataclass
class ModelResult:
    name: str
    params: dict[str, Any]
    validation: float  # TUNE_METRIC on validation with the chosen parameters
    trials: list[Trial]
    tune_s: float
    fit_s: float  # refit on the whole training split
    rank_s: float
    per_user: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    coverage: float = 0.0


@dataclass
class RunResult:
    protocol: Protocol
    test: targets.Targets
    validation: targets.Targets
    models: dict[str, ModelResult]
    test_sources: Sources | None = None
    """The blend's candidate lists on the test split (when a blend was run): other weights measured there."""


def choose_blend(
    ds: Dataset, split: Split, ctx: Context, log: Log = print
) -> tuple[BlendChoice, targets.Targets]:
    """The blend weights a training round publishes (training/tuning.py): its components fitted once on
    `split.train` at their start parameters (`ctx.starts`: ALS's chosen ones), then `blend_rule` on
    `split.test`. Nothing is refitted or measured after: the caller measures the chosen weights on its
    own test rows."""
    t = targets.build(ds, split)
    fitted = {}
    for name in COMPONENTS:
        model = BASE_MODELS[name]
        fitted[name] = model.fit(ds, split.train, model.start(ctx), ctx)
    return blend_rule([(Hybrid.sources(fitted, _seen(t)), t)], ctx, "train", log, Hybrid.NAME), t


@dataclass
class BlendChoice:
    """What `blend_rule` chose and why."""

    search: Search
    """Every weighting of the grid, valued by `DEBIASED`; `best` is the choice."""
    accuracy: dict[str, float]
    """`TUNE_METRIC` of each weighting tried (`tune.key`), the single sources' included."""
    floor: float
    """The best single source's `TUNE_METRIC`: what a chosen weighting must reach."""
    singles: dict[str, dict[str, float]]
    """The single-source weightings the floor comes from, by source."""


def single_source(source: str) -> dict[str, float]:
    """The weighting of serving's single-source strategy for `source` (`recommend.source_weights`):
    the source alone, trending only filling a short list."""
    return {w: 1.0 if s == source else FILL_WEIGHT if s == "trending" else 0.0 for w, s in WEIGHTS.items()}


def pick_weighting(
    tried: list[dict[str, float]], accuracy: dict[str, float], debiased: dict[str, float], floor: float
) -> dict[str, float]:
    """`blend_rule`'s choice: the most debiased of the weightings with accuracy >= floor, else the most
    accurate; the first tried of equals (values by `tune.key`)."""
    eligible = [w for w in tried if accuracy[tune.key(w)] >= floor]
    if eligible:
        return max(eligible, key=lambda w: debiased[tune.key(w)])  # max keeps the first of equals
    return max(tried, key=lambda w: accuracy[tune.key(w)])


Holdout = tuple[Sources, targets.Targets]
"""A blend's candidate lists on one holdout, and that holdout's targets."""


def blend_rule(holdouts: list[Holdout], ctx: Context, grid: str, log: Log, label: str) -> BlendChoice:
    """The training round's blend rule on its holdout (on several: by their means). Among the
    weightings of `Hybrid.joint_axes` (and the settings' own) at least as accurate (`TUNE_METRIC`) as
    the best single source, the one with the most popularity-debiased NDCG@10 (`DEBIASED`); when none
    is (pinned weights), the most accurate.

    Two targets, each guarding what the other misses. Accuracy alone rewards leaning on what users
    would have found anyway (the popular next video: in the closed loop such a blend fell 2-5 s of
    watch time per impression behind ALS alone); the debiased target alone can pick a blend less
    accurate than one of its own parts (ML-100k leave-one-out: ALS alone, 0.056 against item-CF's
    0.059). The floor keeps the served default at least as good as its best part at predicting what
    users did; above it, the least popularity-leaning weighting wins. Ties go to the first tried."""
    accuracy: dict[str, float] = {}
    debiased: dict[str, float] = {}

    def measure(weights: dict[str, float]) -> None:
        key = tune.key(weights)
        if key not in accuracy:
            values = []
            for sources, t in holdouts:
                per_user, top = _measure(Hybrid.assemble(sources, weights, ctx), t)
                values.append(
                    (per_user[TUNE_METRIC].mean(), metrics.debiased_ndcg(top, t.relevant, t.item_rows))
                )
            accuracy[key], debiased[key] = (float(v) for v in np.mean(values, axis=0))
            log(
                f"[evaluate]   {label} {weights} -> {TUNE_METRIC} {accuracy[key]:.4f}, "
                f"{DEBIASED} {debiased[key]:.4f}"
            )

    start = settings_weights(ctx)
    grid_points = [start] + [
        {**start, **dict(zip(names, values, strict=True))}
        for names, combos in Hybrid.joint_axes(ctx, grid).items()
        for values in combos
    ]
    singles = {WEIGHTS[w]: single_source(WEIGHTS[w]) for w in WEIGHTS}
    for weights in [*singles.values(), *grid_points]:
        measure(weights)
    floor = max(accuracy[tune.key(w)] for w in singles.values())
    tried = list(dict((tune.key(w), w) for w in grid_points).values())
    best = pick_weighting(tried, accuracy, debiased, floor)
    log(f"[evaluate]   {label}: the best single source's {TUNE_METRIC} is {floor:.4f}; chosen {best}")
    trials = [Trial(dict(w), debiased[tune.key(w)], 0.0) for w in tried]
    return BlendChoice(Search(best, debiased[tune.key(best)], trials), accuracy, floor, singles)


def measure_blend(sources: Sources, weights: dict[str, float], t: targets.Targets, ctx: Context) -> dict:
    """Every metric per user of the blend with these weights over already built candidate lists."""
    return _measure(Hybrid.assemble(sources, weights, ctx), t)[0]


def _blend_value(holdouts: list[Holdout], weights: dict[str, Any], ctx: Context) -> float:
    """`TUNE_METRIC`'s mean over users for the blend with these weights (over holdouts: their mean)."""
    return float(np.mean([measure_blend(s, weights, t, ctx)[TUNE_METRIC].mean() for s, t in holdouts]))


def _seen(t: targets.Targets) -> dict[int, np.ndarray]:
    """Each target user's training items (serving's seen set)."""
    return dict(zip(t.users.tolist(), t.seen, strict=True))


def _measure(fitted: Fitted, t: targets.Targets) -> tuple[dict[str, np.ndarray], np.ndarray]:
    top = targets.rank(fitted.scores, t)
    return metrics.per_user(top, t.relevant), top


def run(
    ds: Dataset,
    protocol: Protocol,
    models: list[str],
    grid: str,
    ctx: Context,
    log: Log = print,
    fixed: frozenset[str] = frozenset(),
    training_blend: bool = False,
) -> RunResult:
    """`fixed`: models fitted with their start (served) parameters only, never searched. `training_blend`:
    the hybrid's weights by the training round's `blend_rule` (else by `TUNE_METRIC` alone)."""
    unknown = sorted(set(models) - set(model_names()))
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {', '.join(model_names())}")
    val_ts = [targets.build(ds, split) for split in protocol.validations]
    test_t = targets.build(ds, protocol.test)
    folds = f" (mean of {len(val_ts)} folds)" if len(val_ts) > 1 else ""
    log(
        f"[evaluate] {protocol.name}: validation{folds} {len(protocol.validation.train):,} train rows -> "
        f"{len(val_ts[0].users):,} users; test {len(protocol.test.train):,} train rows -> {len(test_t.users):,} users"
    )
    wanted = set(models)
    if wanted & set(HYBRIDS):
        wanted |= set(COMPONENTS)
    results: dict[str, ModelResult] = {}
    fitted_val: dict[str, list[Fitted]] = {}  # per validation fold
    fitted_test: dict[str, Fitted] = {}
    for name in model_names():
        if name not in wanted or name in HYBRIDS:
            continue
        model = BASE_MODELS[name.removesuffix(DEFAULTS_SUFFIX)]
        untuned = name.endswith(DEFAULTS_SUFFIX) or name in fixed
        search, tune_s, fitted_val[name] = _tune(name, model, grid, untuned, ds, protocol, val_ts, ctx, log)
        results[name] = _refit_and_measure(
            name, model, search, tune_s, ds, protocol, test_t, ctx, fitted_test, log
        )

    if wanted & set(HYBRIDS):
        # The candidate lists do not depend on the weights: built once, shared by every blend.
        val_holdouts = [
            (Hybrid.sources({c: fitted_val[c][i] for c in COMPONENTS}, _seen(t)), t)
            for i, t in enumerate(val_ts)
        ]
        test_sources = Hybrid.sources(fitted_test, _seen(test_t))
    for name in HYBRIDS:
        if name not in wanted:
            continue
        results[name] = _hybrid(name, grid, val_holdouts, test_t, test_sources, ctx, log, training_blend)
        # A blend trains nothing of its own: its training time is its components'.
        results[name].fit_s = sum(results[c].fit_s for c in COMPONENTS)
    return RunResult(
        protocol,
        test_t,
        val_ts[0],
        {n: results[n] for n in models},
        test_sources if wanted & set(HYBRIDS) else None,
    )


def _tune(
    name: str,
    model: Any,
    grid: str,
    untuned: bool,
    ds: Dataset,
    protocol: Protocol,
    val_ts: list[targets.Targets],
    ctx: Context,
    log: Log,
) -> tuple[Search, float, list[Fitted]]:
    """Search the model's axes on validation (a parameter set's value: its mean over the folds); also
    returns the chosen parameters' fit on each fold (for the hybrid)."""
    axes = {} if untuned else model.axes(grid, ctx)
    best: dict[str, Any] = {}

    def evaluate(params: dict[str, Any]) -> tuple[float, float]:
        t0 = time.perf_counter()
        fitted = [model.fit(ds, split.train, params, ctx) for split in protocol.validations]
        seconds = time.perf_counter() - t0
        value = float(
            np.mean([_measure(f, t)[0][TUNE_METRIC].mean() for f, t in zip(fitted, val_ts, strict=True)])
        )
        if value > best.get("value", -1.0):
            best.update(value=value, fitted=fitted, key=tune.key(params))
        log(f"[evaluate]   {name} {params} -> validation {TUNE_METRIC} {value:.4f} ({seconds:.1f} s)")
        return value, seconds

    t0 = time.perf_counter()
    search = coordinate_ascent(model.start(ctx), axes, evaluate, max_trials=ctx.max_trials)
    tune_s = time.perf_counter() - t0
    if best["key"] != tune.key(search.best):
        # The search kept a simpler set within `min_gain` of the highest value: the blend is chosen over
        # the components that will serve, so those are fitted again.
        best["fitted"] = [model.fit(ds, split.train, search.best, ctx) for split in protocol.validations]
    return search, tune_s, best["fitted"]


def _refit_and_measure(
    name: str,
    model: Any,
    search: Search,
    tune_s: float,
    ds: Dataset,
    protocol: Protocol,
    test_t: targets.Targets,
    ctx: Context,
    fitted_test: dict[str, Fitted],
    log: Log,
) -> ModelResult:
    t0 = time.perf_counter()
    fitted = model.fit(ds, protocol.test.train, search.best, ctx)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    per_user, top = _measure(fitted, test_t)
    rank_s = time.perf_counter() - t0
    fitted_test[name] = fitted
    result = ModelResult(
        name,
        search.best,
        search.value,
        search.trials,
        tune_s,
        fit_s,
        rank_s,
        per_user,
        metrics.coverage(top, test_t.n_candidates),
    )
    log(
        f"[evaluate] {name}: {search.best} -> test {TUNE_METRIC} {per_user[TUNE_METRIC].mean():.4f} "
        f"(fit {fit_s:.1f} s, tuning {tune_s:.1f} s over {len(search.trials)} trials)"
    )
    return result


def _hybrid(
    name: str,
    grid: str,
    val_holdouts: list[Holdout],
    test_t: targets.Targets,
    test_sources: Sources,
    ctx: Context,
    log: Log,
    training_blend: bool = False,
) -> ModelResult:
    t0 = time.perf_counter()
    if name == Hybrid.NAME and training_blend:  # the training round's rule (`blend_rule`)
        choice = blend_rule(val_holdouts, ctx, grid, log, name)
        search = choice.search
        validation = choice.accuracy[tune.key(search.best)]  # the report's column: NDCG@10 for every model
    else:
        axes = Hybrid.axes(grid, ctx) if name == Hybrid.NAME else {}

        def evaluate(weights: dict[str, Any]) -> tuple[float, float]:
            value = _blend_value(val_holdouts, weights, ctx)
            log(f"[evaluate]   {name} {weights} -> validation {TUNE_METRIC} {value:.4f}")
            return value, 0.0

        search = coordinate_ascent(settings_weights(ctx), axes, evaluate)
        validation = search.value
    tune_s = time.perf_counter() - t0
    fitted = Hybrid.assemble(test_sources, search.best, ctx)
    t0 = time.perf_counter()
    per_user, top = _measure(fitted, test_t)
    rank_s = time.perf_counter() - t0
    log(f"[evaluate] {name}: {search.best} -> test {TUNE_METRIC} {per_user[TUNE_METRIC].mean():.4f}")
    return ModelResult(
        name,
        search.best,
        validation,
        search.trials,
        tune_s,
        0.0,
        rank_s,
        per_user,
        metrics.coverage(top, test_t.n_candidates),
    )
