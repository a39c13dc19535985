"""ALS benchmark: Spark MLlib ALS (the production job's code) vs the `implicit` library, same data, same run.

    .venv/bin/python benchmarks/als_benchmark.py            # 50k users x 10k videos, ~1M events
    .venv/bin/python benchmarks/als_benchmark.py --quick    # 5k x 2k, ~100k events (harness check)

A synthetic log with hidden tastes and power-law popularity (fixed seed) is written as JSON lines. The
benchmark keeps its own per-user time-based holdout: each user's latest video is held out, for users
with at least 3 videos (`transform.mark_holdout(ratings, 1, 3)`). It does not call `train_once`: the
job now tunes on a slice of its own and then fits on every pair, which would leave nothing unseen to
score. Instead it runs the job's own stage code (--master, local[2] by default), timed and logged like
the job's stages (the same `Stages` lines, from which the Spark JVM's CPU seconds per stage are read):
extract (`extract.read_dataset`, `transform.pairs`), transform (`transform.ratings`, `index_ids`, then
the holdout mark), fit (`fit.fit_als` on the pairs not held out, then `fit.collect_factors`). No tuning
and no publishing: both libraries get the fixed parameters of the flags (rank, iterations, alpha;
Spark's regParam is the job's default unless --reg-param), so speed and quality are compared at equal
parameters. The one exception is the regularisation of `implicit`, whose lambda is not scaled per user
and video as Spark's (ALS-WR) is: each value of --implicit-reg is fitted and timed, and the best NDCG on
the holdout is reported (a choice made on the test users, to implicit's advantage; Spark's regParam is
not searched).

`implicit`'s CPU ALS is fitted on exactly the ratings Spark trained on (the same marked DataFrame,
collected), with Spark's confidences sign(r) * (1 + alpha * |r|), and both (and a popularity baseline
from the same training pairs) are scored on the same holdout users with the same numpy metrics
(`training.evaluate.ranking_metrics`, the videos seen in training masked). Nothing is published and no
service is needed. Writes benchmarks/results/als.json and als.md and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / ".local" / "bench" / "als"
HOLDOUT, MIN_USER_VIDEOS = 1, 3  # each user's latest video, users with >= 3 videos


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--videos", type=int, default=10_000)
    p.add_argument("--events", type=int, default=1_000_000, help="approximate number of interactions")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--topics", type=int, default=30, help="hidden taste topics of the generator")
    p.add_argument("--explore", type=float, default=0.1, help="share of views picked by popularity alone")
    p.add_argument("--quick", action="store_true", help="5k users x 2k videos x 100k events")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--reg-param", type=float, default=None, help="Spark regParam (default: the job's)")
    p.add_argument("--alpha", type=float, default=None, help="confidence slope (default: the job's)")
    p.add_argument("--blocks", type=int, default=0, help="ALS blocks (0 = cores)")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="4g")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting")
    p.add_argument(
        "--implicit-reg",
        type=float,
        nargs="+",
        default=[0.01, 0.1, 1.0],
        help="implicit regularization values to try (its lambda is not scaled per user; the best "
        "NDCG is reported, each fit timed)",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "als.json")
    args = p.parse_args(argv)
    if args.quick:
        args.users, args.videos, args.events = 5_000, 2_000, 100_000
    return args


def dataset(args: argparse.Namespace) -> Path:
    from recstream.training import synthetic

    name = f"log-{args.users}-{args.videos}-{args.events}-t{args.topics}-e{args.explore}-s{args.seed}.jsonl"
    path = WORK / name
    if not path.exists():
        t0 = time.perf_counter()
        # About 1.35 interactions per view (likes, shares, skips... on top): aim at --events in total.
        log = synthetic.generate(
            args.users,
            args.videos,
            int(args.events / 1.35),
            n_topics=args.topics,
            explore=args.explore,
            seed=args.seed,
        )
        synthetic.write_jsonl(log, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").rename(path)
        print(
            f"[bench] wrote {len(log):,} interactions to {path} in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
    return path


def run_spark(spark: Any, path: Path, params: Any, log: Any) -> dict[str, Any]:
    """The job's extract, transform and fit code (training.pipeline's stages, timed and logged the same
    way), the fit on the pairs not held out; then the same marked ratings, collected for implicit and the
    metrics (alphabetical ids: the integer ids of the factors)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from recstream.scoring import EngagementParams
    from recstream.training import extract, fit, transform
    from recstream.training.pipeline import Stages

    stages = Stages(log)
    engagement = EngagementParams(fast_skip_ms=params.fast_skip_ms)
    blocks = params.blocks or spark.sparkContext.defaultParallelism
    cached: list[Any] = []
    try:
        with stages.stage("extract") as notes:
            events, info = extract.read_dataset(spark, path)
            events = extract.restrict_window(events, params.window_days)
            pairs = transform.pairs(events, engagement).persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(pairs)
            stats = pairs.agg(F.sum("events"), F.min("first_ts"), F.max("last_ts")).first()
            n_events = int(stats[0] or 0)
            notes.update(source=f"{info.kind}:{info.name}", events=n_events)

        with stages.stage("transform") as notes:
            indexed = transform.index_ids(transform.ratings(pairs))
            marked = transform.mark_holdout(indexed.ratings, HOLDOUT, MIN_USER_VIDEOS)
            marked = marked.persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(marked)
            counts = marked.agg(F.count(F.lit(1)), F.sum(F.col("held").cast("int"))).first()
            n_pairs, n_held = int(counts[0]), int(counts[1] or 0)
            pairs.unpersist()
            cached.remove(pairs)
            n_users, n_items = len(indexed.user_ids), len(indexed.item_ids)
            notes.update(users=n_users, videos=n_items, pairs=n_pairs, held_out=n_held)
        train = marked.where(~F.col("held"))

        with stages.stage("fit") as notes:
            t0 = time.perf_counter()
            model = fit.fit_als(train, params, blocks)
            als_fit_s = round(time.perf_counter() - t0, 3)  # ALS.fit alone (the rest: factors to numpy)
            factors = fit.collect_factors(model, n_users, n_items)
            notes.update(als_s=als_fit_s, rank=params.rank, iterations=params.max_iter, blocks=blocks)
        timings = {**stages.timings, "total": stages.total()}

        log("[bench] collecting the same ratings and holdout for implicit ...")
        rows = marked.select("user", "item", "r", F.col("held").cast("int")).collect()
    finally:
        for df in cached:
            df.unpersist()
    arr = np.array(rows, dtype=np.float64)
    return {
        "user": arr[:, 0].astype(np.int64),
        "item": arr[:, 1].astype(np.int64),
        "r": arr[:, 2],
        "held": arr[:, 3].astype(bool),
        "user_ids": indexed.user_ids,
        "item_ids": indexed.item_ids,
        "events": n_events,
        "factors": factors,
        "als_fit_s": als_fit_s,
        "blocks": blocks,
        "timings": timings,
    }


def eval_sets(h: dict[str, Any]) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    order = np.argsort(h["user"], kind="stable")
    user, item, r, held = h["user"][order], h["item"][order], h["r"][order], h["held"][order]
    bounds = np.flatnonzero(np.diff(user)) + 1
    users, seen, relevant = [], [], []
    for u_items, u_r, u_held, u in zip(
        np.split(item, bounds),
        np.split(r, bounds),
        np.split(held, bounds),
        user[np.r_[0, bounds]],
        strict=True,
    ):
        rel = u_items[u_held & (u_r > 0)]
        if len(rel):
            users.append(u)
            seen.append(u_items[~u_held])
            relevant.append(rel)
    return np.array(users), seen, relevant


class JvmCpu:
    """CPU seconds the Spark JVM spends per training stage, from the job's own stage lines. On a shared
    machine wall time depends on the neighbours; CPU time much less."""

    def __init__(self, spark: Any) -> None:
        self.pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
        self.started: dict[str, float] = {}
        self.stages: dict[str, float] = {}

    def now(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self, line: str) -> None:
        print(line, flush=True)
        words = line.split()
        if len(words) >= 3 and words[0] == "[train]":
            if words[2] == "...":
                self.started[words[1]] = self.now()
            elif words[2] == "done" and words[1] in self.started:
                self.stages[words[1]] = round(self.now() - self.started.pop(words[1]), 2)


def run_implicit(h: dict[str, Any], args: argparse.Namespace, alpha: float, sets: tuple) -> dict[str, Any]:
    from implicit.cpu.als import AlternatingLeastSquares
    from scipy.sparse import csr_matrix
    from threadpoolctl import threadpool_limits

    from recstream.training.evaluate import factor_scores, ranking_metrics

    train = ~h["held"]
    values = np.sign(h["r"][train]) * (1 + alpha * np.abs(h["r"][train]))
    shape = (len(h["user_ids"]), len(h["item_ids"]))
    matrix = csr_matrix((values.astype(np.float32), (h["user"][train], h["item"][train])), shape=shape)
    runs = []
    for reg in args.implicit_reg:
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; BLAS threads on top only contend
            model = AlternatingLeastSquares(
                factors=args.rank,
                regularization=reg,
                alpha=1.0,  # the confidences are already Spark's 1 + alpha * |r|
                iterations=args.iterations,
                num_threads=2,
                random_state=args.seed,
                calculate_training_loss=False,
            )
            t0, c0 = time.perf_counter(), time.process_time()
            model.fit(matrix, show_progress=False)
            fit_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        m = ranking_metrics(factor_scores(model.user_factors, model.item_factors), *sets, k=10)
        runs.append({"regularization": reg, "fit_s": round(fit_s, 2), "fit_cpu_s": round(cpu_s, 2), **m})
        print(f"[bench] implicit reg={reg}: fit {fit_s:.1f} s, ndcg@10={m['ndcg@10']:.4f}", flush=True)
    best = max(runs, key=lambda run: run["ndcg@10"])
    # The same algorithm as Spark (an exact Cholesky solve per user and item), to separate what the
    # conjugate-gradient shortcut buys from what the platform costs.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=args.rank,
            regularization=best["regularization"],
            alpha=1.0,
            iterations=args.iterations,
            num_threads=2,
            random_state=args.seed,
            calculate_training_loss=False,
            use_cg=False,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(matrix, show_progress=False)
        fit_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    m = ranking_metrics(factor_scores(model.user_factors, model.item_factors), *sets, k=10)
    cholesky = {
        "regularization": best["regularization"],
        "fit_s": round(fit_s, 2),
        "fit_cpu_s": round(cpu_s, 2),
        **m,
    }
    print(f"[bench] implicit cholesky: fit {fit_s:.1f} s, ndcg@10={m['ndcg@10']:.4f}", flush=True)
    return {
        **best,
        "runs": runs,
        "solver": "conjugate gradient (3 steps), implicit's default",
        "cholesky": cholesky,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from recstream.training.evaluate import factor_scores, popularity_scores, ranking_metrics
    from recstream.training.params import TrainParams
    from recstream.training.session import SparkOptions, blas_implementation, build_session

    load_before = os.getloadavg()
    path = dataset(args)
    defaults = TrainParams()
    params = TrainParams(
        rank=args.rank,
        max_iter=args.iterations,
        reg_param=args.reg_param if args.reg_param is not None else defaults.reg_param,
        alpha=args.alpha if args.alpha is not None else defaults.alpha,
        blocks=args.blocks,
        tune_trials=1,  # recorded as "the flags as given": the benchmark never tunes
    )
    conf = dict(item.split("=", 1) for item in args.conf)
    t0 = time.perf_counter()
    spark = build_session(
        SparkOptions(
            master=args.master,
            driver_memory=args.driver_memory,
            checkpoint_dir=WORK / "checkpoints",
            conf=conf,
        )
    )
    session_s = time.perf_counter() - t0
    try:
        blas = blas_implementation(spark)
        print(f"[bench] Spark {spark.version} {args.master}, {blas}, session {session_s:.1f} s", flush=True)
        cpu = JvmCpu(spark)
        h = run_spark(spark, path, params, cpu.log)
    finally:
        spark.stop()

    sets = eval_sets(h)
    factors = h["factors"]
    spark_metrics = ranking_metrics(factor_scores(factors.user_factors, factors.item_factors), *sets, k=10)
    print(
        f"[bench] Spark ALS: fit {h['als_fit_s']:.1f} s, ndcg@10={spark_metrics['ndcg@10']:.4f}", flush=True
    )
    train = ~h["held"] & (h["r"] > 0)
    popularity = np.bincount(h["item"][train], minlength=len(h["item_ids"])).astype(np.float32)
    pop_metrics = ranking_metrics(popularity_scores(popularity), *sets, k=10)
    implicit_res = run_implicit(h, args, params.alpha, sets)

    out = {
        "dataset": {
            "users": len(h["user_ids"]),
            "videos": len(h["item_ids"]),
            "interactions": h["events"],
            "pairs": int(len(h["r"])),
            "train_pairs": int((~h["held"]).sum()),
            "holdout_users": int(len(sets[0])),
            "holdout": f"each user's {HOLDOUT} latest video(s), users with >= {MIN_USER_VIDEOS} videos; "
            "scored for users whose held-out video is a positive",
            "seed": args.seed,
            "generator": f"recstream.training.synthetic: {args.topics} Dirichlet taste topics, Zipf "
            f"popularity, {args.explore:.0%} of views by popularity alone",
        },
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "spark": {
            "master": args.master,
            "blas": blas,
            "params": params.as_dict(),
            "tuned": False,
            "blocks": h["blocks"],
            "trained_on": "pairs not held out",
            "conf": conf,
            "session_start_s": round(session_s, 2),
            "fit_s": h["als_fit_s"],
            "cpu_s_per_stage": cpu.stages,
            "stages_s": h["timings"],
            "end_to_end_s": h["timings"]["total"],
            **spark_metrics,
        },
        "implicit": {**implicit_res, "trained_on": "the same ratings as Spark"},
        "popularity": pop_metrics,
    }
    out["spark_fit_over_implicit_fit"] = round(out["spark"]["fit_s"] / implicit_res["fit_s"], 2)
    out["spark_fit_cpu_over_implicit_fit_cpu"] = round(
        cpu.stages.get("fit", 0) / implicit_res["fit_cpu_s"], 2
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    table = markdown(out)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return 0


def markdown(r: dict[str, Any]) -> str:
    d, s, i, p = r["dataset"], r["spark"], r["implicit"], r["popularity"]
    rows = [
        f"| ALS, rank {s['params']['rank']}, {s['params']['max_iter']} iterations | fit (s) | end to end (s) | "
        "NDCG@10 | Recall@10 | MAP@10 |",
        "|---|---|---|---|---|---|",
        f"| implicit {i['solver'].split(',')[0]} (reg {i['regularization']}) | {i['fit_s']:.1f} | - | "
        f"{i['ndcg@10']:.4f} | {i['recall@10']:.4f} | {i['map@10']:.4f} |",
        f"| implicit exact Cholesky (reg {i['cholesky']['regularization']}) | {i['cholesky']['fit_s']:.1f} | - | "
        f"{i['cholesky']['ndcg@10']:.4f} | {i['cholesky']['recall@10']:.4f} | {i['cholesky']['map@10']:.4f} |",
        f"| Spark MLlib ALS {s['master']} ({s['blas']}) | {s['fit_s']:.1f} | {s['end_to_end_s']:.1f} | "
        f"{s['ndcg@10']:.4f} | {s['recall@10']:.4f} | {s['map@10']:.4f} |",
        f"| popularity | - | - | {p['ndcg@10']:.4f} | {p['recall@10']:.4f} | {p['map@10']:.4f} |",
    ]
    stages = ", ".join(f"{k} {v:.1f}" for k, v in s["stages_s"].items() if k != "total")
    regs = "/".join(f"{run['regularization']:g}" for run in i["runs"])
    return "\n".join(
        [
            f"ALS on {d['interactions']:,} synthetic interactions ({d['users']:,} users x {d['videos']:,} videos, "
            f"{d['holdout_users']:,} holdout users), {r['machine']['cores']} cores:",
            "",
            *rows,
            "",
            f"Spark fit / implicit fit = {r['spark_fit_over_implicit_fit']}x wall, "
            f"{r['spark_fit_cpu_over_implicit_fit_cpu']}x CPU (Spark's fit stage incl. factors to the driver: "
            f"{s['cpu_s_per_stage'].get('fit', 0):.1f} CPU-s; implicit {i['fit_cpu_s']:.1f} CPU-s). "
            f"Spark end to end = the job's extract, transform (with the holdout split) and fit code, fit on the "
            f"pairs not held out, untuned, nothing published ({stages} s wall). Fixed parameters: Spark "
            f"regParam {s['params']['reg_param']:g} (scaled per user and video), alpha {s['params']['alpha']:g} "
            f"for both; implicit's unscaled regularization is the best of {regs} on this holdout. "
            f"Load average before/after: {r['machine']['load_avg_before'][0]}/{r['machine']['load_avg_after'][0]}.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
