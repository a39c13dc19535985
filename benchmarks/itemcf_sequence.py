"""Sequence-aware item-CF: direction, recency, window, half-life and normalisation, on data with real order.

    .venv/bin/python benchmarks/itemcf_sequence.py            # ~10 min on 2 cores
    .venv/bin/python benchmarks/itemcf_sequence.py --quick    # a 60,000-event simulator log (~3 min)

For each dataset (MovieLens-100k with its timestamps; the simulator's log, `WorldConfig` defaults with
only users / videos / seed fixed here: its parameters are the yardstick, never tuned) and protocol
(leave-one-out: each user's last 13 rows, the last tests, the second last validates, MicroLens'
protocol; temporal: one global cut, the last 20 % of rows test), the offline streaming item-CF
(`recstream.evaluation.models.itemcf`) is searched on the VALIDATION split only, over:

- direction: symmetric False (earlier -> later) / True (both ways); served: `covisit_both_ways`;
- recency (pair weight and serving's source weight per step back): 0.5, 0.8 (served), 1.0;
- window (`lookback`: earlier videos paired with a new one, and recent videos serving looks up): 1, 3,
  10 (served), 20;
- half-life of the co-visitation weights: 1 h, 6 h (served), 1 day, 30 days, none;
- normalisation: row (served), cosine, row-pop with beta 0.25 / 0.5 / 1 (see the model's docstring).

Search: `recstream.evaluation.tune.coordinate_ascent` (the project's rule: one axis at a time, a change
kept only for >= 0.001 NDCG@10, rounds until nothing changes), twice: from the served settings and from
`recstream evaluate`'s choice on MovieLens' random split (both ways, no decay, window 20, recency 1), to
see whether the first stops on a local optimum. The best validated of all trials is kept; every value of
every axis is then tried around it (the "around the best" table: what each choice is worth).

Every value of every axis is also tried from the served setting, the others held: what each single
change of the defaults is worth.

One setting for every dataset (what serving can have): per axis, the value with the highest mean over
the four dataset x protocol cases of validation NDCG@10 relative to the case's best (the other axes at
each case's best). It is validated in each case like the rest. "Settings only" is the same, among what the
served settings can express without a change to the agents or serving (row normalisation): a third
coordinate ascent per case with it held, then the same per-axis rule.

Then, on test, once: the served setting, each case's best validated, the common setting, settings only,
popularity (reference), and the served setting under `recstream evaluate`'s replay; NDCG@10 with its
95 % CI, and paired differences against the served setting over the same users. Ranking and metrics are the
evaluator's own (`targets.build` / `targets.rank`, `metrics.per_user`, as `runner._measure`).

Every fit replays what the agents and serving run today (`replay="agents"`: per-pair forward decay from
each pair's own event time, scoring.normalised_top, a serving process's best
`serving_neighbours_per_video`; the same as `recstream.devtools.reference`). `recstream evaluate`'s replay
(`replay="batches"`: merge_neighbours per 10,000-event batch, within which nothing decays; on MovieLens
a batch spans weeks) is shown for the served setting only.

Writes benchmarks/results/itemcf_sequence.md and .json (`--quick`: itemcf_sequence_quick.*).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field, replace
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
REPLAY = "agents"
WORLD = {"users": 2000, "videos": 3000, "seed": 1}
SIM_EVENTS, SIM_EVENTS_QUICK = 200_000, 60_000
# Normalisation as one axis: "row-pop:<beta>" is normalise="row-pop" with that pop_beta.
NORMALISE = ["row", "cosine", "row-pop:0.25", "row-pop:0.5", "row-pop:1"]
AXES: dict[str, list[Any]] = {
    "symmetric": [False, True],
    "recency": [0.5, 0.8, 1.0],
    "lookback": [1, 3, 10, 20],
    "half_life_s": [HOUR, 6 * HOUR, DAY, 30 * DAY, NO_DECAY_S],
    "normalise": NORMALISE,
}
EVALUATE_REPLAY = "served, `recstream evaluate`'s replay"
# What the served settings can express without a change to the agents or to serving: row normalisation
# (direction is `covisit_both_ways`; the alternatives need per-video engagement sums beside the lists).
SETTINGS_ONLY = {"normalise": "row"}
SECOND_START = {"symmetric": True, "half_life_s": NO_DECAY_S, "lookback": 20, "recency": 1.0}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def key(p: dict[str, Any]) -> str:
    return json.dumps(p, sort_keys=True)


def model_params(p: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's parameters -> the model's (the normalisation axis unpacked, the agents' replay)."""
    out = {**p, "replay": REPLAY}
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


def value_label(axis: str, v: Any) -> str:
    if axis == "symmetric":
        return "both ways" if v else "earlier->later"
    if axis == "recency":
        return f"recency {v:g}"
    if axis == "lookback":
        return f"window {v}"
    if axis == "half_life_s":
        return f"half-life {half_life_label(float(v))}"
    return str(v)


def describe(p: dict[str, Any]) -> str:
    return ", ".join(value_label(a, p[a]) for a in AXES)


def changes(p: dict[str, Any], base: dict[str, Any]) -> str:
    diff = [value_label(a, p[a]) for a in AXES if p[a] != base[a]]
    return ", ".join(diff) if diff else "served"


def measure(fitted: Fitted, t: targets.Targets) -> dict[str, np.ndarray]:
    """As runner._measure: the evaluator's ranking, per-user metrics."""
    return metrics.per_user(targets.rank(fitted.scores, t), t.relevant)


# --- datasets ------------------------------------------------------------------------------------
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
        "span_hours": round(float(ds.ts.max() - ds.ts.min()) / 1000 / HOUR, 2),
    }


# --- one dataset x protocol ----------------------------------------------------------------------
@dataclass
class Case:
    ds: Dataset
    protocol: protocols.Protocol
    ctx: Context
    val_t: targets.Targets = field(init=False)
    test_t: targets.Targets = field(init=False)
    trials: dict[str, dict[str, Any]] = field(default_factory=dict)  # by key(params), in the order tried
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)
    best_settings: dict[str, Any] = field(default_factory=dict)  # the best with SETTINGS_ONLY held
    tune_s: float = 0.0
    popularity_validation: float = 0.0

    def __post_init__(self) -> None:
        self.val_t = targets.build(self.ds, self.protocol.validation)
        self.test_t = targets.build(self.ds, self.protocol.test)

    @property
    def name(self) -> str:
        return f"{self.ds.name} / {self.protocol.name}"

    def validate(self, p: dict[str, Any], search: str) -> float:
        k = key(p)
        if k not in self.trials:
            t0 = time.perf_counter()
            fitted = ItemCF.fit(self.ds, self.protocol.validation.train, model_params(p), self.ctx)
            mean, ci = metrics.mean_ci(measure(fitted, self.val_t)[METRIC])
            seconds = time.perf_counter() - t0
            self.trials[k] = {
                "params": dict(p),
                "search": search,
                "validation": mean,
                "ci": ci,
                "seconds": seconds,
            }
            log(
                f"  {len(self.trials):3d} [{search}] {describe(p)} -> validation {mean:.4f} ± {ci:.4f} ({seconds:.1f} s)"
            )
        return float(self.trials[k]["validation"])

    def test(self, label: str, fitted: Fitted, params: dict[str, Any] | None = None) -> None:
        per_user = measure(fitted, self.test_t)[METRIC]
        mean, ci = metrics.mean_ci(per_user)
        self.tests[label] = {"params": params, "mean": mean, "ci": ci, "per_user": per_user}
        log(f"  test {label}: {METRIC} {mean:.4f} ± {ci:.4f}")


def search(case: Case) -> None:
    log(
        f"{case.name}: validation {len(case.protocol.validation.train):,} train rows -> {len(case.val_t.users):,} "
        f"users; test {len(case.protocol.test.train):,} train rows -> {len(case.test_t.users):,} users"
    )
    start = served(case.ctx)
    t0 = time.perf_counter()
    for name, first in (("from served", start), ("from evaluate's", {**start, **SECOND_START})):

        def evaluate(p: dict[str, Any], name: str = name) -> tuple[float, float]:
            return case.validate(p, name), 0.0

        coordinate_ascent(first, dict(AXES), evaluate)
    case.best = max(case.trials.values(), key=lambda t: t["validation"])["params"]
    # The best the served settings alone can express: the same search with SETTINGS_ONLY held.
    free = {a: v for a, v in AXES.items() if a not in SETTINGS_ONLY}
    coordinate_ascent(
        {**start, **SETTINGS_ONLY}, dict(free), lambda p: (case.validate(p, "settings-only search"), 0.0)
    )
    held = [t for t in case.trials.values() if all(t["params"][a] == v for a, v in SETTINGS_ONLY.items())]
    case.best_settings = max(held, key=lambda t: t["validation"])["params"]
    for axis, values in free.items():
        for v in values:
            case.validate({**case.best_settings, axis: v}, "around the best (settings only)")
    for around, label in ((case.best, "around the best"), (start, "one change from served")):
        for axis, values in AXES.items():  # every value of every axis, the others held
            for v in values:
                case.validate({**around, axis: v}, label)
    case.tune_s = time.perf_counter() - t0
    fitted = Popularity.fit(case.ds, case.protocol.validation.train, {}, case.ctx)
    case.popularity_validation = float(measure(fitted, case.val_t)[METRIC].mean())
    log(f"  best validated: {describe(case.best)} ({case.trials[key(case.best)]['validation']:.4f})")


def common_setting(cases: list[Case], settings_only: bool = False) -> dict[str, Any]:
    """Per axis, the value with the highest mean validation relative to each case's best (others at the
    case's best); `settings_only`: among the settings with SETTINGS_ONLY held, from each case's best of
    those."""
    out = {**served(cases[0].ctx), **(SETTINGS_ONLY if settings_only else {})}
    for axis, values in AXES.items():
        if settings_only and axis in SETTINGS_ONLY:
            continue
        score = {}
        for i, v in enumerate(values):
            ratios = []
            for c in cases:
                best = c.best_settings if settings_only else c.best
                ratios.append(
                    c.trials[key({**best, axis: v})]["validation"] / c.trials[key(best)]["validation"]
                )
            score[i] = float(np.mean(ratios))
        out[axis] = values[max(score, key=lambda i: score[i])]
    return out


SETTINGS = ("served", "best validated", "common setting", "settings only")


def setting_params(case: Case, label: str, common: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "served": served(case.ctx),
        "best validated": case.best,
        "common setting": common["common setting"],
        "settings only": common["settings only"],
    }[label]


def measure_test(case: Case, common: dict[str, dict[str, Any]]) -> None:
    log(f"{case.name}: test")
    rows, ctx, ds = case.protocol.test.train, case.ctx, case.ds
    start = served(ctx)
    for label in SETTINGS:
        p = setting_params(case, label, common)
        case.test(label, ItemCF.fit(ds, rows, model_params(p), ctx), p)
    case.test(EVALUATE_REPLAY, ItemCF.fit(ds, rows, start, ctx), start)
    case.test("popularity", Popularity.fit(ds, rows, {}, ctx))


def paired(case: Case, label: str) -> tuple[float, float]:
    return metrics.mean_ci(case.tests[label]["per_user"] - case.tests["served"]["per_user"])


# --- the report ----------------------------------------------------------------------------------
def markdown(cases: list[Case], common: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    start = served(cases[0].ctx)
    out = [
        "# Sequence-aware item-CF: direction, recency, window, half-life, normalisation",
        "",
        f"`{meta['command']}` ({meta['seconds'] / 60:.1f} min, {meta['cores']} cores, commit {meta['commit']}, "
        f"load average at start {meta['load']}). Parameters chosen on validation only; test measured once "
        "per setting (see the script's docstring for the search). ± is the 95 % CI of the mean over users; "
        '"- served" rows are paired differences over the same test users. Every item-CF fit replays the '
        "agents' and serving's code as it runs today (`replay=\"agents\"`: per-pair forward decay, "
        f"`normalised_top`, serving's best {meta['serving_neighbours']} per video); `recstream evaluate`'s "
        'replay (`replay="batches"`) is shown for the served setting.',
        "",
        f"Served setting: {describe(start)} (history {start['history_length']}, {start['neighbours']} "
        "neighbours kept per video).",
        "",
        "Datasets:",
        "",
    ]
    for name, d in meta["datasets"].items():
        out.append(
            f"- **{name}**: {d['rows']:,} rows ({d['events']:,} events), {d['users']:,} users, {d['items']:,} "
            f"items, {d['positive_share']:.0%} positive rows, spanning {d['span_hours']:,g} hours"
            + (f"; {d['note']}" if d.get("note") else "")
        )
    out += [
        "",
        "## Summary (NDCG@10)",
        "",
        f"- **common setting** (one for every case, chosen on validation): {describe(common['common setting'])}",
        "- **settings only** (the same, among what the served settings can express: row normalisation): "
        f"{describe(common['settings only'])}",
    ]
    out += [f"- **best validated**, {c.name}: {describe(c.best)}" for c in cases]
    out += [
        "",
        "Validation:",
        "",
        "| dataset / protocol | users | " + " | ".join(SETTINGS) + " | popularity |",
        "|---|---|" + "---|" * (len(SETTINGS) + 1),
    ]
    for c in cases:
        cells = [f"{c.trials[key(setting_params(c, label, common))]['validation']:.4f}" for label in SETTINGS]
        out.append(
            f"| {c.name} | {len(c.val_t.users):,} | "
            + " | ".join(cells)
            + f" | {c.popularity_validation:.4f} |"
        )
    out += [
        "",
        "Test (each setting refitted on the whole training split, measured once):",
        "",
        "| dataset / protocol | users | "
        + " | ".join(SETTINGS)
        + " | popularity | served, evaluate's replay |",
        "|---|---|" + "---|" * (len(SETTINGS) + 2),
    ]
    for c in cases:
        cells = [f"{c.tests[label]['mean']:.4f} ± {c.tests[label]['ci']:.4f}" for label in SETTINGS]
        out.append(
            f"| {c.name} | {len(c.test_t.users):,} | "
            + " | ".join(cells)
            + f" | {c.tests['popularity']['mean']:.4f} | {c.tests[EVALUATE_REPLAY]['mean']:.4f} |"
        )
    out += [
        "",
        "Test, paired difference against the served setting (same users; ± the 95 % CI):",
        "",
        "| dataset / protocol | " + " | ".join(f"{label} - served" for label in SETTINGS[1:]) + " |",
        "|---|" + "---|" * (len(SETTINGS) - 1),
    ]
    for c in cases:
        cells = [f"{m:+.4f} ± {ci:.4f}" for m, ci in (paired(c, label) for label in SETTINGS[1:])]
        out.append(f"| {c.name} | " + " | ".join(cells) + " |")
    out.append("")
    width = max(map(len, AXES.values()))
    for c in cases:
        best_v = c.trials[key(c.best)]["validation"]
        out += [
            f"## {c.name} {json.dumps(c.protocol.params)}",
            "",
            f"{len(c.val_t.users):,} validation users, {len(c.test_t.users):,} test users, "
            f"{c.test_t.n_candidates:,} candidate items; {len(c.trials)} validation fits in {c.tune_s:.0f} s.",
            "",
        ]
        for around, title in (
            (c.best, f"Around the best validated setting ({describe(c.best)}: {best_v:.4f})"),
            (start, f"From the served setting ({c.trials[key(start)]['validation']:.4f})"),
        ):
            out += [
                f"{title}, one axis changed at a time (validation NDCG@10; bold: the setting's own value):",
                "",
                "| axis | " + " | ".join(f"value {i + 1}" for i in range(width)) + " |",
                "|---|" + "---|" * width,
            ]
            for axis, values in AXES.items():
                cells = []
                for val in values:
                    tr = c.trials[key({**around, axis: val})]
                    mark = "**" if val == around[axis] else ""
                    cells.append(f"{mark}{value_label(axis, val)}: {tr['validation']:.4f}{mark}")
                cells += [""] * (width - len(cells))
                out.append(f"| {axis} | " + " | ".join(cells) + " |")
            out.append("")
        out += [
            "All validation fits, in the order tried (setting: what differs from the served one):",
            "",
            "| # | search | setting | validation NDCG@10 | s |",
            "|---|---|---|---|---|",
        ]
        for i, tr in enumerate(c.trials.values(), 1):
            mark = " **(best)**" if tr["params"] == c.best else ""
            out.append(
                f"| {i} | {tr['search']} | {changes(tr['params'], start)}{mark} | "
                f"{tr['validation']:.4f} ± {tr['ci']:.4f} | {tr['seconds']:.1f} |"
            )
        out.append("")
    out += ["## What this says", ""] + what_this_says(cases, common) + [""]
    return "\n".join(out)


def what_this_says(cases: list[Case], common: dict[str, dict[str, Any]]) -> list[str]:
    start = served(cases[0].ctx)
    lines = []
    for c in cases:
        t = c.tests
        diffs = {label: paired(c, label) for label in SETTINGS[1:]}

        def said(label: str, c: Case = c, diffs: dict[str, tuple[float, float]] = diffs) -> str:
            m, ci = diffs[label]
            mean = c.tests[label]["mean"]
            return f"{mean:.4f} ({m:+.4f} ± {ci:.4f}{', significant' if abs(m) > ci else ''})"

        lines.append(
            f"- **{c.name}**: best validated = {describe(c.best)} (validation "
            f"{c.trials[key(c.best)]['validation']:.4f} vs served {c.trials[key(start)]['validation']:.4f}). "
            f"Test: served {t['served']['mean']:.4f}; best validated {said('best validated')}; common setting "
            f"{said('common setting')}; settings only {said('settings only')}; popularity "
            f"{t['popularity']['mean']:.4f}."
        )
    lines += ["", "What each case's best chose, axis by axis (served value in brackets):", ""]
    for axis in AXES:
        chosen = "; ".join(f"{c.name}: {value_label(axis, c.best[axis])}" for c in cases)
        lines.append(f"- {axis} [{value_label(axis, start[axis])}]: {chosen}")
    lines += [
        "",
        "One change from the served setting, validation NDCG@10 minus the served setting's, per case "
        f"({', '.join(c.name for c in cases)}):",
        "",
    ]
    for axis, values in AXES.items():
        parts = []
        for v in values:
            if v == start[axis]:
                continue
            gains = [
                c.trials[key({**start, axis: v})]["validation"] - c.trials[key(start)]["validation"]
                for c in cases
            ]
            parts.append(f"{value_label(axis, v)}: " + " / ".join(f"{g:+.4f}" for g in gains))
        lines.append(f"- {axis}: " + "; ".join(parts))
    lines += [
        "",
        f"One setting for all four cases (validation only): {describe(common['common setting'])}; among what the "
        f"served settings can express: {describe(common['settings only'])}.",
    ]
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
    ml = replace(data.load("movielens", fetch()), name="MovieLens-100k")
    log(f"generating the simulator's log: WorldConfig({WORLD}), {n_events:,} events")
    sim = simulator(n_events)
    meta_ds = {ds.name: describe_dataset(ds) for ds in (ml, sim)}
    meta_ds["simulator"]["note"] = (
        f"`SimulatedWorld(WorldConfig(users={WORLD['users']}, videos={WORLD['videos']}, seed={WORLD['seed']}))`, "
        f"every other parameter its default, the first {n_events:,} events of `.events()` (its virtual clock: "
        "100 ms per watched video, all users together)"
    )
    cases = [
        Case(ds, protocol, ctx)
        for ds in (ml, sim)
        for protocol in (protocols.leave_one_out(ds, keep_last=13), protocols.temporal(ds, test_fraction=0.2))
    ]
    for case in cases:
        search(case)
    common = {
        "common setting": common_setting(cases),
        "settings only": common_setting(cases, settings_only=True),
    }
    for label, p in common.items():
        log(f"{label}: {describe(p)}")
    for case in cases:
        for label, p in common.items():
            case.validate(p, label)
    for case in cases:
        measure_test(case, common)
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
        "replay": REPLAY,
        "serving_neighbours": ctx.settings.serving_neighbours_per_video,
        "world": WORLD,
        "simulator_events": n_events,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    md = markdown(cases, common, meta)
    (RESULTS / f"itemcf_sequence{suffix}.md").write_text(md)
    saved = {
        "meta": meta,
        "common": common,
        "cases": [
            {
                "dataset": c.ds.name,
                "protocol": c.protocol.name,
                "protocol_params": c.protocol.params,
                "validation_users": len(c.val_t.users),
                "test_users": len(c.test_t.users),
                "best": c.best,
                "trials": list(c.trials.values()),
                "test": {k: {kk: vv for kk, vv in v.items() if kk != "per_user"} for k, v in c.tests.items()},
                "paired_vs_served": {
                    label: dict(zip(("mean", "ci"), paired(c, label), strict=True)) for label in SETTINGS[1:]
                },
            }
            for c in cases
        ],
    }
    (RESULTS / f"itemcf_sequence{suffix}.json").write_text(json.dumps(saved, indent=1, default=float) + "\n")
    print(md)
    log(f"done in {seconds / 60:.1f} min: {RESULTS / f'itemcf_sequence{suffix}.md'}")


if __name__ == "__main__":
    main()
