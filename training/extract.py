"""Extract: the interactions log from Kafka (batch, up to the current end offsets) or a dataset file.

Both paths end in the same DataFrame of Interaction fields, so everything after extraction is shared.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recstream.kafka.config import client_kwargs, spark_options
from recstream.records import EVENT_TYPES, ID_MAX_LENGTH, ID_PATTERN, MAX_DURATION_MS, MAX_TS, Interaction
from recstream.settings import get_settings

UNKNOWN_TOPIC_OR_PARTITION = 3  # Kafka protocol error code

# The wire contract (recstream.records.Interaction) as a Spark schema: its fields, in its order.
INTERACTION_SCHEMA = T.StructType(
    [
        T.StructField("type", T.StringType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("video_id", T.StringType()),
        T.StructField("ts", T.LongType()),
        T.StructField("watch_time_ms", T.LongType()),
        T.StructField("duration_ms", T.LongType()),
    ]
)
STRING_FIELDS = tuple(f.name for f in INTERACTION_SCHEMA.fields if isinstance(f.dataType, T.StringType))
# Java's `$` also matches before a final line break; pydantic's regex (Rust) only at the very end,
# which is Java's `\z`.
SPARK_ID_PATTERN = ID_PATTERN.removesuffix("$") + r"\z"


class ExtractError(Exception):
    """Nothing to train on, or the source cannot be read."""


@dataclass(frozen=True)
class SourceInfo:
    """Where the data came from: stored with the model (reproducibility, data range)."""

    kind: str
    name: str
    offsets: dict[str, list[int]] = field(default_factory=dict)
    """Kafka: partition -> [start, end) offsets read."""

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "offsets": self.offsets}


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(**client_kwargs(get_settings(), bootstrap))
    await admin.start()
    try:
        (meta,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if meta["error_code"] == UNKNOWN_TOPIC_OR_PARTITION:
        raise ExtractError(f"Kafka topic {topic!r} does not exist: nothing to train on")
    if meta["error_code"] or not meta["partitions"]:
        raise ExtractError(f"Kafka topic {topic!r} cannot be read (error code {meta['error_code']})")
    return sorted(p["partition"] for p in meta["partitions"])


async def _offsets(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    tps = [TopicPartition(topic, p) for p in await _partitions(bootstrap, topic)]
    consumer = AIOKafkaConsumer(**client_kwargs(get_settings(), bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        return {tp.partition: (starts[tp], ends[tp]) for tp in tps}
    finally:
        await consumer.stop()


def kafka_end_offsets(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    """[start, end) offsets per partition, fixed now: the batch reads exactly this much of the log."""
    return asyncio.run(_offsets(bootstrap, topic))


def read_kafka(spark: SparkSession, bootstrap: str, topic: str) -> tuple[DataFrame, SourceInfo]:
    offsets = kafka_end_offsets(bootstrap, topic)
    if sum(end - start for start, end in offsets.values()) == 0:
        raise ExtractError(f"Kafka topic {topic!r} is empty: nothing to train on")
    ending = {topic: {str(p): end for p, (_s, end) in offsets.items()}}
    starting = {topic: {str(p): start for p, (start, _e) in offsets.items()}}
    try:
        raw = (
            spark.read.format("kafka")
            .options(**spark_options(get_settings(), bootstrap))
            .option("subscribe", topic)
            .option("startingOffsets", json.dumps(starting))
            .option("endingOffsets", json.dumps(ending))
            .load()
        )
    except Exception as exc:
        if "Failed to find data source: kafka" in str(exc):
            raise ExtractError(
                "Spark's Kafka source is not on the classpath: run `make install` (resolves it into "
                ".local/spark-jars) and pass it with --jars-dir, or spark-submit --jars"
            ) from exc
        raise
    # ts is optional on the wire (the server stamps it); fall back to the broker's timestamp.
    events = parse_json(raw.select(F.col("value").cast("string").alias("json"), "timestamp"))
    events = events.withColumn(
        "ts", F.coalesce(F.col("ts"), (F.unix_micros(F.col("timestamp")) / 1000).cast("long"))
    ).drop("timestamp")
    # Users erased (DELETE /users/{id}: an {"erase_user": ...} record on the same topic) are left out
    # entirely, although the log keeps their events until its retention removes them.
    erased = (
        raw.select(F.get_json_object(F.col("value").cast("string"), "$.erase_user").alias("user_id"))
        .where(F.col("user_id").isNotNull())
        .distinct()
    )
    events = events.join(F.broadcast(erased), "user_id", "left_anti")
    info = SourceInfo("kafka", topic, {str(p): [s, e] for p, (s, e) in offsets.items()})
    return valid(events), info


def parse_json(raw: DataFrame) -> DataFrame:
    """A `json` string column -> Interaction columns (other columns kept), for the records whose JSON
    has the contract's shape (`_json_shaped`); `valid` then checks the values."""
    parsed = raw.where(_json_shaped(F.col("json"))).withColumn(
        "e", F.from_json(F.col("json"), INTERACTION_SCHEMA)
    )
    others = [c for c in raw.columns if c != "json"]
    return parsed.select("e.*", *others)


def _json_shaped(text: Column) -> Column:
    """What the typed parse cannot see, checked on the JSON itself: the record is strict JSON (from_json
    also takes single quotes), an object with no field beyond Interaction's (pydantic's extra="forbid"),
    and its strings are JSON strings (from_json reads a number into a string field as its text; pydantic
    refuses it)."""
    fields = F.array(*(F.lit(name) for name in Interaction.model_fields))
    document = F.try_parse_json(text)
    shaped = document.isNotNull() & (F.size(F.array_except(F.json_object_keys(text), fields)) == 0)
    for name in STRING_FIELDS:
        value = F.try_variant_get(document, f"$.{name}", "variant")
        shaped &= value.isNull() | (F.schema_of_variant(value) == "STRING")
    return shaped


def read_dataset(spark: SparkSession, path: Path) -> tuple[DataFrame, SourceInfo]:
    """JSON lines of Interaction records, or Parquet with the same columns (by suffix)."""
    if not path.exists():
        raise ExtractError(f"dataset {path} does not exist")
    if path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet"))):
        events = spark.read.schema(INTERACTION_SCHEMA).parquet(str(path))
    else:  # JSON lines, checked line by line as the Kafka path checks messages
        events = parse_json(spark.read.text(str(path)).withColumnRenamed("value", "json"))
    events = events.withColumn("ts", F.coalesce(F.col("ts"), F.lit(0).cast("long")))
    return valid(events), SourceInfo("dataset", str(path))


def _is_id(name: str) -> Column:
    return F.col(name).rlike(SPARK_ID_PATTERN) & (F.length(name) <= ID_MAX_LENGTH)


def _within(name: str, low: int, high: int) -> Column:
    """An optional integer field: absent, or in [low, high] (pydantic's ge / le)."""
    return F.col(name).isNull() | F.col(name).between(low, high)


def is_valid() -> Column:
    """recstream.records.Interaction's rules on the parsed values, with its constants. A missing `ts`
    passes: the server stamps it (here: the broker's time, or 0 for a file).

    Where pydantic is more lenient, training still is not: pydantic coerces a time given as an ISO 8601
    or numeric string and an integer written as 5000.0, which Spark's typed parse reads as null (such a
    time is then stamped like a missing one, such a view has no watch time and is skipped). The API and
    recstream's producers write what pydantic dumped (plain integers): only a foreign producer meets this."""
    return (
        F.col("type").isin(*EVENT_TYPES)
        & _is_id("user_id")
        & _is_id("video_id")
        & _within("ts", 0, MAX_TS)
        & _within("watch_time_ms", 0, MAX_DURATION_MS)
        & _within("duration_ms", 0, MAX_DURATION_MS)
        # Interaction._view_needs_watch_time
        & ((F.col("type") != "view") | F.col("watch_time_ms").isNotNull())
    )


def valid(events: DataFrame) -> DataFrame:
    """Only records the wire contract accepts; the agents dead-letter the rest, training skips them."""
    return events.where(is_valid()).select(*INTERACTION_SCHEMA.fieldNames())


def restrict_window(events: DataFrame, window_days: float) -> DataFrame:
    """The last `window_days` of the log, relative to its newest event (not the wall clock, so a
    replayed or offline dataset trains the same way)."""
    if window_days <= 0:
        return events
    newest = events.agg(F.max("ts")).first()[0]
    if newest is None:
        return events
    return events.where(F.col("ts") >= F.lit(int(newest - window_days * 86_400_000)))
