"""The Spark session of a training run: tuned for ALS, with the Kafka connector on the classpath."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import SparkSession

# For tests and tiny datasets, where Spark's fixed costs dominate: one shuffle partition, no adaptive
# re-planning, no UI.
SMALL_DATA_CONF = {
    "spark.sql.shuffle.partitions": "1",
    "spark.sql.adaptive.enabled": "false",
    "spark.ui.enabled": "false",
}


@dataclass(frozen=True)
class SparkOptions:
    master: str | None = None
    """None under spark-submit (its --master wins); `recstream train` passes local[*] by default."""
    jars_dir: Path | None = None
    """Directory of jars for spark.jars (the Kafka connector, resolved by Maven into .local/spark-jars)."""
    checkpoint_dir: Path | None = None
    driver_memory: str = "2g"
    app_name: str = "recstream-als"
    conf: dict[str, str] = field(default_factory=dict)
    """Extra Spark settings (applied last)."""


def connector_jars(jars_dir: Path | None) -> list[str]:
    if jars_dir is None or not jars_dir.is_dir():
        return []
    return sorted(str(p) for p in jars_dir.glob("*.jar"))


def build_session(options: SparkOptions, launched_by_spark_submit: bool = False) -> SparkSession:
    """A session for one training process.

    When this process starts the JVM itself (`recstream train`), JVM settings apply here too: jars,
    driver memory, JIT. Under spark-submit the JVM already exists, so those come from its flags (see
    training/als_job.py).
    """
    builder = SparkSession.builder.appName(options.app_name)
    if options.master:
        builder = builder.master(options.master)
    # Settings of the SparkContext this process creates (spark-submit or not).
    builder = (
        builder
        # ALS shuffles blocks of Java objects: Kryo is smaller/faster than Java serialization for them.
        .config("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
        .config("spark.ui.showConsoleProgress", "false")
        # Checkpoint files of a finished training are deleted, not left to pile up run after run.
        .config("spark.cleaner.referenceTracking.cleanCheckpoints", "true")
        .config("spark.executorEnv.OPENBLAS_NUM_THREADS", "1")
    )
    if not launched_by_spark_submit:
        # Settings of the JVM itself: only when this process starts it (spark-submit flags otherwise).
        # Native BLAS threads on top of Spark's task threads oversubscribe the cores: one each.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        jars = connector_jars(options.jars_dir)
        if jars:
            builder = builder.config("spark.jars", ",".join(jars))
        builder = (
            builder.config("spark.driver.memory", options.driver_memory)
            # The quick C1 JIT only: a training run lasts a minute or two and the heavy lifting is in
            # native BLAS/LAPACK; C2 compilations cost more CPU than they save (measured on the
            # benchmark's ALS fit, 610k ratings, rank 64, cold JVM: 55 -> 46 CPU-s).
            .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1")
            .config("spark.executor.extraJavaOptions", "-XX:TieredStopAtLevel=1")
        )
    for key, value in options.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    # 200 shuffle partitions (the default) is tuned for clusters; for the aggregations here a few per
    # core is faster. Respect an explicit setting.
    if spark.conf.get("spark.sql.shuffle.partitions") == "200":
        cores = spark.sparkContext.defaultParallelism
        spark.conf.set("spark.sql.shuffle.partitions", str(max(2, 2 * cores)))
    if options.checkpoint_dir is not None:
        options.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        spark.sparkContext.setCheckpointDir(str(options.checkpoint_dir))
    return spark


def release_cached(spark: SparkSession) -> None:
    """Drop everything a training run left persisted (ALS keeps its factor RDDs cached), so a
    long-lived `--every` session does not grow round after round."""
    spark.catalog.clearCache()
    for rdd in spark.sparkContext._jsc.getPersistentRDDs().values():  # noqa: SLF001 - no public API
        rdd.unpersist(False)


def blas_implementation(spark: SparkSession) -> str:
    """Which BLAS/LAPACK Spark's ALS uses: JNIBLAS/JNILAPACK = native (OpenBLAS through libblas.so.3
    and liblapack.so.3); VectorBLAS or F2jBLAS = the Java fallbacks (Spark then warns at first use)."""
    try:
        netlib = spark.sparkContext._jvm.dev.ludovic.netlib  # the library Spark's BLAS wraps
        native = netlib.blas.BLAS.getInstance().getClass().getSimpleName()
        lapack = netlib.lapack.LAPACK.getInstance().getClass().getSimpleName()
        return f"blas={native} lapack={lapack}"
    except Exception as exc:  # diagnostics only: never fail a training on it
        return f"unknown ({exc.__class__.__name__})"
