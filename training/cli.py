"""`recstream train`: train ALS with Spark from the log and publish the model (once, or every N s).

Scheduling: `recstream train --every 3600` keeps one Spark session and retrains every hour; or cron:

    17 * * * * cd /srv/recstream && .venv/bin/recstream train >> .local/data/train.log 2>&1

Either way a Redis lock (`model:lock:train`) makes sure two trainings never run at once: a run that
finds it held exits with status 3 (a loop skips that round). Exit status 4: nothing to train on;
5: trained and registered, but the quality gate kept it from being activated.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from recstream.settings import Settings, get_settings

EXIT_LOCKED = 3
EXIT_NO_DATA = 4
EXIT_REJECTED = 5


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from recstream.training.params import add_param_arguments

    src = parser.add_argument_group("data")
    src.add_argument(
        "--dataset",
        type=Path,
        help="JSON-lines or Parquet file of Interaction records "
        "(default: the interactions topic in Kafka, up to its current end offsets)",
    )
    src.add_argument("--topic", help="Kafka topic (default: <topic_prefix>.interactions)")

    run = parser.add_argument_group("run")
    run.add_argument(
        "--master",
        default=None,
        help="Spark master (default local[*]; spark://host:7077 "
        "for a cluster; under spark-submit, its own --master)",
    )
    run.add_argument(
        "--jars-dir",
        type=Path,
        default=None,
        help="jars for Spark's Kafka source (default <local_dir>/spark-jars, from `make install`)",
    )
    run.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="ALS checkpoint directory (default <data_dir>/spark-checkpoints)",
    )
    run.add_argument("--driver-memory", default="2g", help="Spark driver memory (local mode: all of Spark)")
    run.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=_key_value,
        help="extra Spark setting, as spark-submit's --conf (repeatable)",
    )
    run.add_argument("--force", action="store_true", help="activate even if the quality gate refuses")
    run.add_argument("--no-publish", action="store_true", help="train and evaluate only")
    run.add_argument("--every", type=float, default=0, metavar="SECONDS", help="retrain every N seconds")
    run.add_argument(
        "--lock-ttl",
        type=float,
        default=600,
        metavar="SECONDS",
        help="expiry of the training lock (renewed while training runs)",
    )
    run.add_argument(
        "--namespace",
        default="model",
        help="registry namespace (Redis key prefix; serving's ModelCache uses the same)",
    )
    run.add_argument("--json", action="store_true", help="print each result as one JSON line")

    admin = parser.add_argument_group("registry")
    admin.add_argument(
        "--keep-factors",
        type=int,
        default=0,
        metavar="N",
        help="after publishing, drop the factor chunks of all but the N newest versions from MongoDB "
        "(documents and metrics are always kept; 0 = keep everything)",
    )
    admin.add_argument("--list", action="store_true", help="list registered versions and exit")
    admin.add_argument(
        "--activate", metavar="VERSION", help="activate a registered version (rollback) and exit"
    )
    add_param_arguments(parser)


def _registry(settings: Settings, args: argparse.Namespace):
    from recstream.serving.model_store import ModelRegistry

    registry = ModelRegistry(settings, namespace=args.namespace)
    registry.ensure_indexes()
    return registry


def _list(registry: Any) -> int:
    active = registry.active_version()
    for doc in registry.versions(limit=50):
        m = doc.get("metrics", {})
        ndcg = next((f"{k}={v:.4f}" for k, v in m.items() if k.startswith("ndcg@")), "-")
        mark = "*" if doc["_id"] == active else " "
        print(
            f"{mark} {doc['_id']}  {doc.get('status', '?'):8}  {ndcg}  users={doc.get('data', {}).get('users')}"
        )
    return 0


def _loop(
    args: argparse.Namespace,
    settings: Settings,
    params: Any,
    source: Any,
    registry: Any,
    options: Any,
    launched_by_spark_submit: bool,
) -> int:
    """Train once, or every `--every` seconds, with one Spark session started at the first run that
    has data (a cron run on an empty log costs a Kafka round trip, not a JVM)."""
    from recstream.serving.training_lock import LockHeld
    from recstream.training.extract import ExtractError
    from recstream.training.pipeline import check_source, train_once
    from recstream.training.session import build_session, release_cached

    # `docker stop` / systemd send SIGTERM: unwind like Ctrl-C so the lock is released and Spark
    # stopped now, rather than the lock blocking the next trainer until it expires.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    spark = None
    try:
        while True:
            started = time.monotonic()
            code = 0
            try:
                with registry.training_lock(args.lock_ttl, holder=f"{settings.app_id}-trainer"):
                    check_source(source)
                    if spark is None:
                        spark = build_session(options, launched_by_spark_submit)
                    result = train_once(
                        spark,
                        params,
                        source,
                        None if args.no_publish else registry,
                        force=args.force,
                        log=lambda line: print(line, flush=True),
                        settings=settings,
                    )
                    if args.keep_factors > 0 and not args.no_publish:
                        registry.prune_factors(args.keep_factors)
                    release_cached(spark)
                if args.json:
                    print(json.dumps(result.__dict__, default=str), flush=True)
                if result.gate is not None and not result.activated:
                    code = EXIT_REJECTED
            except LockHeld as exc:
                print(f"[train] skipped: {exc}", flush=True)
                code = EXIT_LOCKED
            except ExtractError as exc:
                print(f"[train] skipped: {exc}", flush=True)
                code = EXIT_NO_DATA
            except Exception:
                if args.every <= 0:
                    raise
                # A scheduler outlives one bad round (a broker restart, a registry blip): say so, go on.
                traceback.print_exc()
                print("[train] failed; retrying at the next round", flush=True)
            if args.every <= 0:
                return code
            time.sleep(max(0.0, args.every - (time.monotonic() - started)))
    finally:
        if spark is not None:
            try:
                spark.stop()
            except Exception:  # interrupted mid-call (SIGTERM): the JVM goes down with this process
                pass


def run(args: argparse.Namespace, launched_by_spark_submit: bool = False) -> int:
    from recstream.kafka.topics import topic_names
    from recstream.serving.model_store import ModelStoreError
    from recstream.training.params import params_from_args
    from recstream.training.pipeline import DatasetSource, KafkaSource
    from recstream.training.session import SparkOptions

    settings = get_settings()
    try:
        params = params_from_args(args, settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    registry = _registry(settings, args)
    try:
        if args.list:
            return _list(registry)
        if args.activate:
            previous = registry.activate_version(args.activate)
            print(f"activated {args.activate} (was {previous})")
            return 0
        if args.dataset is not None:
            source: Any = DatasetSource(args.dataset)
        else:
            source = KafkaSource(settings.kafka_bootstrap, args.topic or topic_names(settings).interactions)
        options = SparkOptions(
            master=args.master or (None if launched_by_spark_submit else "local[*]"),
            jars_dir=args.jars_dir or settings.local_dir / "spark-jars",
            checkpoint_dir=args.checkpoint_dir or settings.data_dir / "spark-checkpoints",
            driver_memory=args.driver_memory,
            conf=dict(args.conf),
        )
        return _loop(args, settings, params, source, registry, options, launched_by_spark_submit)
    except ModelStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        registry.close()
