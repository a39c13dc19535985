"""`recstream train` end to end: Spark's Kafka source reads a real topic, the model gets published."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from recstream.serving.model_store import ModelRegistry
from recstream.settings import Settings
from recstream.training import synthetic
from recstream.training.session import SMALL_DATA_CONF

RECSTREAM = Path(sys.executable).with_name("recstream")


@pytest.fixture
def prefix() -> str:
    return f"test-train-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def registry(services: Settings, prefix: str) -> Iterator[ModelRegistry]:
    reg = ModelRegistry(services, namespace=prefix)
    yield reg
    reg.delete_namespace()
    reg.close()


async def _produce(bootstrap: str, topic: str, records: list[dict]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        for rec in records:
            await producer.send(topic, key=rec["user_id"].encode(), value=json.dumps(rec).encode())
        # The log is not only valid records: these must be skipped, not fail the job.
        await producer.send(topic, key=b"x", value=b"not json")
        await producer.send(topic, key=b"x", value=json.dumps({"type": "teleport", "user_id": "x"}).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def test_recstream_train_from_kafka(services: Settings, prefix: str, registry: ModelRegistry) -> None:
    topic = f"{prefix}.interactions"
    records = list(synthetic.records(synthetic.generate(150, 40, 2000, n_topics=3, seed=2)))
    await _produce(services.kafka_bootstrap, topic, records)
    try:
        conf = [arg for key, value in SMALL_DATA_CONF.items() for arg in ("--conf", f"{key}={value}")]
        proc = subprocess.run(
            [
                str(RECSTREAM),
                "train",
                "--master",
                "local[2]",
                "--namespace",
                prefix,
                "--rank",
                "8",
                "--max-iter",
                "5",
                "--tune-trials",
                "1",
                "--driver-memory",
                "1g",
                "--json",
                *conf,
            ],
            env={**os.environ, "RECSTREAM_TOPIC_PREFIX": prefix},
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        await _delete_topic(services.kafka_bootstrap, topic)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for stage in ("extract", "tune", "transform", "fit", "publish"):
        assert any(line.startswith(f"[train] {stage} done in") for line in lines), proc.stdout
    result = json.loads(next(line for line in lines if line.startswith("{")))

    source = result["data"]["source"]
    assert source["kind"] == "kafka" and source["name"] == topic
    assert sum(end - start for start, end in source["offsets"].values()) == len(records) + 2
    assert result["data"]["events"] == len(records)  # the two bad messages were skipped
    assert result["activated"] and registry.active_version() == result["version"]
    doc = registry.get(result["version"])
    assert doc["metrics"]["ndcg@10"] > 0 and doc["data"]["users"] == 150
    assert doc["spark"]["blas"] in {"JNIBLAS", "VectorBLAS", "F2jBLAS"}


def test_an_empty_topic_is_reported_not_crashed(
    services: Settings, prefix: str, registry: ModelRegistry
) -> None:
    proc = subprocess.run(
        [str(RECSTREAM), "train", "--namespace", prefix, "--master", "local[1]", "--topic", f"{prefix}.none"],
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "does not exist" in proc.stdout
    assert registry.versions() == []
