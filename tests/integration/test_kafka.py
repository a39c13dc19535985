"""The local broker is a real Kafka: round trips, and transactions with read_committed consumers."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from recstream.settings import Settings


async def _new_topic(bootstrap: str, partitions: int = 1) -> str:
    name = f"test-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def _read_all(bootstrap: str, topic: str, expected: int, **kwargs) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, **kwargs
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        while len(values) < expected:
            batch = await consumer.getmany(timeout_ms=3000)
            if not batch:
                break
            values += [m.value for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    return values


async def test_round_trip(services: Settings) -> None:
    topic = await _new_topic(services.kafka_bootstrap, partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for i in range(30):
            await producer.send(topic, key=f"k{i % 5}".encode(), value=f"v{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    values = await _read_all(services.kafka_bootstrap, topic, 30)
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(30))


async def test_transactions_commit_and_abort(services: Settings) -> None:
    topic = await _new_topic(services.kafka_bootstrap)
    producer = AIOKafkaProducer(
        bootstrap_servers=services.kafka_bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-1")
            await producer.send_and_wait(topic, b"committed-2")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-3")
    finally:
        await producer.stop()

    committed = await _read_all(services.kafka_bootstrap, topic, 3, isolation_level="read_committed")
    assert committed == [b"committed-1", b"committed-2", b"committed-3"]
    # A read_uncommitted consumer sees the aborted record too: the abort really happened in the log.
    everything = await _read_all(services.kafka_bootstrap, topic, 4, isolation_level="read_uncommitted")
    assert b"aborted" in everything
