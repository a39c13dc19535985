"""`recstream evaluate <format> <path> --protocol <name>`: every model on one split, one report.

recstream evaluate movielens ml-100k.inter --protocol recommenders
recstream evaluate microlens MicroLens-50k_pairs.csv --protocol leave-one-out --models popularity,itemcf
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
from pathlib import Path

from recstream.evaluation.protocols import PROTOCOLS

DEFAULT_MODELS = "popularity,trending,itemcf,spark-als,implicit-als,ease,hybrid,hybrid-defaults"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from recstream.datasets import FORMATS

    parser.add_argument("format", choices=sorted(FORMATS), help="dataset format")
    parser.add_argument("path", type=Path, help="dataset file")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="recommenders")
    parser.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help=f"comma-separated (default: {DEFAULT_MODELS}); also <model>-defaults for a "
        "model's untuned defaults, e.g. implicit-als-defaults",
    )
    parser.add_argument(
        "--grid",
        choices=["small", "full"],
        default="full",
        help="parameter values tried on validation: full, or small for a quick look",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: reports/<dataset>-<protocol>)"
    )
    parser.add_argument(
        "--by",
        choices=["item", "user"],
        default="item",
        help="recommenders: stratify by item (the benchmark notebook) or by user",
    )
    parser.add_argument("--seed", type=int, default=42, help="recommenders: split seed")
    parser.add_argument("--ratio", type=float, default=0.75, help="recommenders: training share per group")
    parser.add_argument(
        "--validation-ratio",
        type=float,
        default=0.9,
        help="recommenders: training share per group when validation is carved out of the training rows",
    )
    parser.add_argument(
        "--validation-folds",
        type=int,
        default=3,
        help="recommenders: validation carve-outs (seeds seed, seed+1, ...); each choice is their mean",
    )
    parser.add_argument("--keep-last", type=int, default=13, help="leave-one-out: rows kept per user")
    parser.add_argument(
        "--test-fraction", type=float, default=0.2, help="temporal: share of rows after the cut"
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for ALS (Spark local[N], implicit)")
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the results table into FILE (e.g. docs/evaluation.md), between "
        "<!-- evaluate:DATASET-PROTOCOL --> markers (appended when absent)",
    )


def _protocol_options(args: argparse.Namespace) -> dict[str, object]:
    if args.protocol == "recommenders":
        return {
            "by": args.by,
            "ratio": args.ratio,
            "seed": args.seed,
            "validation_ratio": args.validation_ratio,
            "validation_folds": args.validation_folds,
        }
    if args.protocol == "leave-one-out":
        return {"keep_last": args.keep_last}
    return {"test_fraction": args.test_fraction}


def run(args: argparse.Namespace) -> int:
    from recstream.datasets import DatasetError
    from recstream.evaluation import data, protocols, report, runner
    from recstream.evaluation.models import Context
    from recstream.evaluation.models.spark_als import make_session
    from recstream.settings import get_settings

    settings = get_settings()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(runner.model_names()))
    if unknown:
        print(
            f"error: unknown models {unknown}; choose from {', '.join(runner.model_names())}", file=sys.stderr
        )
        return 2
    if any(m.startswith("implicit-als") for m in models) and importlib.util.find_spec("implicit") is None:
        # Fail now, not after minutes of tuning the other models.
        print(
            "error: implicit-als needs the `implicit` package (pip install 'recstream[bench]'), "
            "or leave it out of --models",
            file=sys.stderr,
        )
        return 2
    try:
        ds = data.load(args.format, args.path)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if ds.n_rows == 0:
        print(f"error: no usable rows in {args.path}", file=sys.stderr)
        return 2
    protocol = protocols.make(args.protocol, ds, **_protocol_options(args))
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    ctx = Context(
        settings,
        threads=args.threads,
        spark_factory=lambda: make_session(settings.local_dir / "evaluate", args.threads, ds.n_rows),
    )
    try:
        # The blend's weights by the rule a training round uses (training/tuning.py), on this protocol's
        # validation rows: what the served default would be.
        result = runner.run(ds, protocol, models, args.grid, ctx, log, training_blend=True)
    finally:
        ctx.close()
    meta = {
        "command": "recstream evaluate "
        + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["evaluate"] else [args.format, str(args.path)]),
        "grid": args.grid,
        "dataset": {"format": args.format, "path": str(args.path)},
    }
    out = args.out or Path("reports") / f"{ds.name}-{args.protocol}"
    json_path, html_path = report.write(out, report.payload(ds, result, meta))
    print(f"{'model':22} {'ndcg@10':>8} {'hr@10':>7} {'map':>7} {'fit s':>7}")
    for name, r in result.models.items():
        print(
            f"{name:22} {r.per_user['ndcg@10'].mean():8.4f} {r.per_user['hr@10'].mean():7.4f} "
            f"{r.per_user['map'].mean():7.4f} {r.fit_s:7.1f}"
        )
    print(f"wrote {json_path} and {html_path}")
    if args.docs is not None:
        key = report.update_docs(args.docs, json.loads(json_path.read_text()))
        print(f"wrote the {key} table into {args.docs}")
    return 0
