"""Sequence-aware item-CF: direction, recency, window, half-life and normalisation, on data with real order.

    .venv/bin/python benchmarks/itemcf_sequence.py            # ~15-25 min on 2 cores
    .venv/bin/python benchmarks/itemcf_sequence.py --quick    # a smaller simulator log (harness check)

For each dataset (MovieLens-100k with its timestamps; the simulator's log, `WorldConfig` defaults with
only users / videos / seed fixed here: its parameters are the yardstick, never tuned) and protocol
(leave-one-out: each user's last 13 rows, the last tests, the second last validates, MicroLens'
protocol; temporal: one global cut, the last 20 % of rows test), the offline streaming item-CF
(`recstream.evaluation.models.itemcf`: the agents' and serving's own functions) is searched on the
VALIDATION split only, by coordinate ascent (`recstream.evaluation.tune.coordinate_ascent`, the
project's rule: one axis at a time from the served settings, a change kept only for >= 0.001 NDCG@10,
rounds until nothing changes) over:

- direction: symmetric False (earlier -> later, served) / True (both ways);
- recency (pair weight and serving's source weight per step back): 0.5, 0.8 (served), 1.0;
- window (`lookback`: earlier videos paired with a new one, and recent videos serving looks up): 1, 3,
  10 (served), 20;
- half-life of the co-visitation weights: 1 h, 6 h (served), 1 day, 30 days, none;
- normalisation: row (served), cosine, row-pop with beta 0.25 / 0.5 / 1 (see the model's docstring).

The served setting and the best validated one are then refitted on the whole training split and
measured once on test (NDCG@10 with its 95 % CI, and the paired difference over the same users).
Popularity is the reference row. Ranking and metrics are the evaluator's own (`targets.build` /
`targets.rank`, `metrics.per_user`, as `runner._measure`).

Every fit replays with `batch_span_s` = 600: a replayed batch also ends where it would span more than
10 minutes of event time. Without it a batch is 10,000 events, which on MovieLens spans weeks (its
leave-one-out training split is 2 batches), and pair weights within a batch are summed undecayed: a
half-life would barely act. The served setting is also shown with `recstream evaluate`'s replay
(10,000-event batches) for reference.

Writes benchmarks/results/itemcf_sequence.md and .json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from recstream.datasets.synthetic import SimulatedWorld, WorldConfig
from recstream.evaluation import data, metrics, protocols, targets
from recstream.evaluation.data import Dataset
from recstream.evaluation.ml100k import fetch
from recstream.evaluation.models import Context, Fitted
from recstream.evaluation.models.baselines import Popularity
from recstream.evaluation.models.itemcf import NO_DECAY_S, ItemCF, served
from recstream.evaluation.tune import coordinate_ascent
from recstream.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "benchmarks" / "results"
METRIC = "ndcg@10"
HOUR, DAY = 3600.0, 86_400.0
BATCH_SPAN_S = 600
WORLD = {"users": 2000, "videos": 3000, "seed": 1}
SIM_EVENTS, SIM_EVENTS_QUICK = 200_000, 60_000
# Normalisation as one axis: "row-pop:<beta>" is normalise="row-pop" with that pop_beta.
NORMALISE = ["row", "cosine", "row-pop:0.25", "row-pop:0.5", "row-pop:1"]
HALF_LIVES = [HOUR, 6 * HOUR, DAY, 30 * DAY, NO_DECAY_S]
AXES: dict[str | tuple[str, ...], list[Any]] = {
    "symmetric": [False, True],
    "recency": [0.5, 0.8, 1.0],
    "lookback": [1, 3, 10, 20],
    "half_life_s": HALF_LIVES,
    "normalise": NORMALISE,
}
SHOWN = ("symmetric", "recency", "lookback", "half_life_s", "normalise")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def model_params(p: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's parameters -> the model's (the normalisation axis unpacked, the replay's span)."""
    out = {**p, "batch_span_s": BATCH_SPAN_S}
    how = str(p["normalise"])
    if how.startswith("row-pop:"):
        out["normalise"], out["pop_beta"] = "row-pop", float(how.split(":", 1)[1])
    return out


def half_life_label(s: float) -> str:
    if s >= NO_DECAY_S:
        return "none"
    if s >= DAY:
        return f"{s / DAY:g} d"
    return f"{s / HOUR:g} h"


def describe(p: dict[str, Any]) -> str:
    return ", ".join(
        [
            "both ways" if p["symmetric"] else "earlier->later",
            f"recency {p['recency']:g}",
            f"window {p['lookback']}",
            f"half-life {half_life_label(float(p['half_life_s']))}",
            f"{p['normalise']}",
        ]
    )


def measure(fitted: Fitted, t: targets.Targets) -> dict[str, np.ndarray]:
    """As runner._measure: the evaluator's ranking, per-user metrics."""
    return metrics.per_user(targets.rank(fitted.scores, t), t.relevant)


# --- datasets ------------------------------------------------------------------------------------
def movielens() -> Dataset:
    return data.load("movielens", fetch())


def simulator(events: int) -> Dataset:
    world = SimulatedWorld(WorldConfig(**WORLD))
    return data.from_events(itertools.islice(world.events(), events), name="simulator")


def describe_dataset(ds: Dataset) -> dict[str, Any]:
    return {
        "rows": ds.n_rows,
        "events": int(ds.row_start[-1]),
        "users": ds.n_users,
        "items": ds.n_items,
        "positive_share": round(float((ds.weight > 0).mean()), 4),
        "span_days": round(float(ds.ts.max() - ds.ts.min()) / 1000 / DAY, 3),
    }


# --- one dataset x protocol ----------------------------------------------------------------------
def run_one(ds: Dataset, protocol: protocols.Protocol, ctx: Context) -> dict[str, Any]:
    val_t = targets.build(ds, protocol.validation)
    test_t = targets.build(ds, protocol.test)
    log(
        f"{ds.name} {protocol.name}: validation {len(protocol.validation.train):,} train rows -> "
        f"{len(val_t.users):,} users; test {len(protocol.test.train):,} train rows -> {len(test_t.users):,} users"
    )
    trials: list[dict[str, Any]] = []

    def evaluate(p: dict[str, Any]) -> tuple[float, float]:
        t0 = time.perf_counter()
        fitted = ItemCF.fit(ds, protocol.validation.train, model_params(p), ctx)
        fit_s = time.perf_counter() - t0
        mean, ci = metrics.mean_ci(measure(fitted, val_t)[METRIC])
        trials.append({"params": dict(p), "validation": mean, "ci": ci, "seconds": time.perf_counter() - t0})
        log(
            f"  trial {len(trials):2d}: {describe(p)} -> validation {METRIC} {mean:.4f} ± {ci:.4f} ({fit_s:.1f} s)"
        )
        return mean, fit_s

    start = served(ctx)
    t0 = time.perf_counter()
    search = coordinate_ascent(start, AXES, evaluate)
    tune_s = time.perf_counter() - t0
    log(
        f"  best on validation: {describe(search.best)} ({search.value:.4f}); served {trials[0]['validation']:.4f}"
    )

    def test(label: str, fit: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        per_user = measure(fit(), test_t)[METRIC]
        mean, ci = metrics.mean_ci(per_user)
        log(f"  test {label}: {METRIC} {mean:.4f} ± {ci:.4f} ({time.perf_counter() - t0:.1f} s)")
        return {"label": label, "mean": mean, "ci": ci, "per_user": per_user}

    rows = protocol.test.train
    served_test = test("served", lambda: ItemCF.fit(ds, rows, model_params(start), ctx))
    best_test = (
        served_test
        if search.best == start
        else test("best validated", lambda: ItemCF.fit(ds, rows, model_params(search.best), ctx))
    )
    served_10k = test("served, 10,000-event batches", lambda: ItemCF.fit(ds, rows, start, ctx))
    pop_val = metrics.mean_ci(measure(Popularity.fit(ds, protocol.validation.train, {}, ctx), val_t)[METRIC])
    pop_test = test("popularity", lambda: Popularity.fit(ds, rows, {}, ctx))
    diff_mean, diff_ci = metrics.mean_ci(best_test["per_user"] - served_test["per_user"])
    return {
        "dataset": ds.name,
        "protocol": protocol.name,
        "protocol_params": protocol.params,
        "validation_users": len(val_t.users),
        "test_users": len(test_t.users),
        "candidates": test_t.n_candidates,
        "trials": trials,
        "tune_s": tune_s,
        "served": start,
        "best": search.best,
        "best_validation": search.value,
        "popularity_validation": {"mean": pop_val[0], "ci": pop_val[1]},
        "test": {
            r["label"]: {"mean": r["mean"], "ci": r["ci"]}
            for r in (served_test, best_test, served_10k, pop_test)
        },
        "best_minus_served": {"mean": diff_mean, "ci": diff_ci},
    }


# --- the report ----------------------------------------------------------------------------------
def fmt_params(p: dict[str, Any], start: dict[str, Any]) -> str:
    changed = [k for k in SHOWN if p[k] != start[k]]
    if not changed:
        return "served"
    parts = {
        "symmetric": lambda v: "both ways" if v else "earlier->later",
        "recency": lambda v: f"recency {v:g}",
        "lookback": lambda v: f"window {v}",
        "half_life_s": lambda v: f"half-life {half_life_label(float(v))}",
        "normalise": lambda v: str(v),
    }
    return ", ".join(parts[k](p[k]) for k in changed)


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [
        "# Sequence-aware item-CF: direction, recency, window, half-life, normalisation",
        "",
        f"`{meta['command']}` ({meta['seconds'] / 60:.1f} min, {meta['cores']} cores, commit {meta['commit']}, "
        f"load average at start {meta['load']}). Parameters chosen on validation only (coordinate ascent from "
        "the served settings, a change kept for >= 0.001 NDCG@10); the served and the best validated "
        'setting measured once on test. ± is the 95 % CI of the mean over users; "best - served" is the '
        "paired difference over the same test users. Every item-CF fit replays with batches cut at 10 "
        "minutes of event time (`batch_span_s` = 600; see the script's docstring); `served, 10,000-event "
        "batches` is `recstream evaluate`'s replay.",
        "",
        "Datasets:",
        "",
    ]
    for name, d in meta["datasets"].items():
        out.append(
            f"- **{name}**: {d['rows']:,} rows ({d['events']:,} events), {d['users']:,} users, {d['items']:,} "
            f"items, {d['positive_share']:.0%} positive rows, spanning {d['span_days']:g} days"
            + (f"; {d['note']}" if d.get("note") else "")
        )
    out.append("")
    for r in results:
        start = r["served"]
        out += [
            f"## {r['dataset']}, {r['protocol']} {json.dumps(r['protocol_params'])}",
            "",
            f"{r['validation_users']:,} validation users, {r['test_users']:,} test users, "
            f"{r['candidates']:,} candidate items; tuning {r['tune_s']:.0f} s over {len(r['trials'])} trials.",
            "",
            "Test:",
            "",
            "| setting | parameters | NDCG@10 |",
            "|---|---|---|",
        ]
        for label, res in r["test"].items():
            params = (
                describe(r["best"])
                if label == "best validated"
                else describe(start)
                if label.startswith("served")
                else "-"
            )
            out.append(f"| {label} | {params} | {res['mean']:.4f} ± {res['ci']:.4f} |")
        d = r["best_minus_served"]
        out += [
            f"| best - served (paired) | | {d['mean']:+.4f} ± {d['ci']:.4f} |",
            "",
            f"Validation trials (NDCG@10; popularity {r['popularity_validation']['mean']:.4f}), in the order "
            "tried; parameters shown where they differ from the served setting:",
            "",
            "| # | setting | validation NDCG@10 | s |",
            "|---|---|---|---|",
        ]
        best_key = json.dumps(r["best"], sort_keys=True)
        for i, t in enumerate(r["trials"], 1):
            mark = " **(best)**" if json.dumps(t["params"], sort_keys=True) == best_key else ""
            out.append(
                f"| {i} | {fmt_params(t['params'], start)}{mark} | {t['validation']:.4f} ± {t['ci']:.4f} | "
                f"{t['seconds']:.1f} |"
            )
        out.append("")
    out += ["## What this says", ""] + what_this_says(results) + [""]
    return "\n".join(out)


def what_this_says(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in results:
        d = r["best_minus_served"]
        significant = abs(d["mean"]) > d["ci"]
        t = r["test"]
        lines.append(
            f"- **{r['dataset']} / {r['protocol']}**: best validated = {describe(r['best'])} "
            f"(validation {r['best_validation']:.4f} vs served {r['trials'][0]['validation']:.4f}); on test "
            f"{t['best validated']['mean']:.4f} vs served {t['served']['mean']:.4f}, paired difference "
            f"{d['mean']:+.4f} ± {d['ci']:.4f} ({'outside' if significant else 'within'} the 95 % CI of "
            f"zero); popularity {t['popularity']['mean']:.4f}."
        )
    lines.append("")
    # Axis by axis: which value each validated best chose.
    for axis in SHOWN:
        chosen = [
            f"{r['dataset']}/{r['protocol']}: {fmt_params({**r['served'], axis: r['best'][axis]}, r['served'])}"
            for r in results
        ]
        lines.append(f"- {axis}: " + "; ".join(chosen))
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"a {SIM_EVENTS_QUICK:,}-event simulator log")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    load = os.getloadavg()
    ctx = Context(get_settings())
    n_events = SIM_EVENTS_QUICK if args.quick else SIM_EVENTS
    log("loading MovieLens-100k")
    ml = movielens()
    ml = replace(ml, name="MovieLens-100k")
    log(f"generating the simulator's log: WorldConfig({WORLD}), {n_events:,} events")
    sim = simulator(n_events)
    datasets = {"MovieLens-100k": ml, "simulator": sim}
    meta_ds = {name: describe_dataset(ds) for name, ds in datasets.items()}
    meta_ds["simulator"]["note"] = (
        f"`SimulatedWorld(WorldConfig(users={WORLD['users']}, videos={WORLD['videos']}, seed={WORLD['seed']}))`, "
        f"every other parameter its default, the first {n_events:,} events of `.events()` (virtual clock: "
        "100 ms per watched video)"
    )
    results = []
    for ds in datasets.values():
        for protocol in (
            protocols.leave_one_out(ds, keep_last=13),
            protocols.temporal(ds, test_fraction=0.2),
        ):
            results.append(run_one(ds, protocol, ctx))
    seconds = time.perf_counter() - started
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    meta = {
        "command": ".venv/bin/python benchmarks/itemcf_sequence.py" + (" --quick" if args.quick else ""),
        "seconds": seconds,
        "cores": os.cpu_count(),
        "commit": commit,
        "load": "/".join(f"{x:.2f}" for x in load),
        "python": platform.python_version(),
        "datasets": meta_ds,
        "batch_span_s": BATCH_SPAN_S,
        "world": WORLD,
        "simulator_events": n_events,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    md = markdown(results, meta)
    (RESULTS / f"itemcf_sequence{suffix}.md").write_text(md)
    (RESULTS / f"itemcf_sequence{suffix}.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1, default=float) + "\n"
    )
    print(md)
    log(f"done in {seconds / 60:.1f} min: {RESULTS / f'itemcf_sequence{suffix}.md'}")


if __name__ == "__main__":
    main()
