"""The worker's own batch producer: changelogs and internal topics written as whole Kafka batches.

Faust's producer buffers and sends one message at a time (~100-130 µs each measured here); a
`BatchBuilder` filled in a loop and handed to aiokafka once costs a few µs per message. Idempotence
keeps each partition's batches in order across retries, which the downstream de-duplication relies on
(it skips what is not newer than what it has applied, per source partition).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from recstream.settings import Settings


@functools.lru_cache(maxsize=1 << 18)  # murmur2 is pure Python here; ids repeat a lot
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as Java clients, aiokafka and Faust use for keyed messages)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class BatchProducer:
    """One idempotent aiokafka producer per worker, started on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            async with self._lock:
                if self._producer is None:
                    producer = AIOKafkaProducer(
                        bootstrap_servers=self.settings.kafka_bootstrap,
                        acks="all",
                        enable_idempotence=True,
                        linger_ms=self.settings.producer_linger_ms,
                        max_batch_size=self.settings.producer_batch_bytes,
                        max_request_size=max(self.settings.producer_batch_bytes * 2, 1_048_576),
                        # A broker outage is waited out (the batch retries) rather than failed fast.
                        request_timeout_ms=120_000,
                        retry_backoff_ms=200,
                    )
                    await producer.start()
                    self._producer = producer
        return self._producer

    async def send(self, topic: str, partition: int,
                   records: Iterable[tuple[bytes | None, bytes]]) -> list[asyncio.Future]:
        """Append (key, value) records to `topic[partition]` in as few batches as fit; returns their
        delivery futures (each resolves to the RecordMetadata of its batch's first record)."""
        producer = await self.producer()
        futures: list[asyncio.Future] = []
        batch = producer.create_batch()
        count = 0
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:
                if count == 0:
                    raise ValueError(f"a record of {len(value)} bytes does not fit in a producer batch")
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch, count = producer.create_batch(), 0
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a record of {len(value)} bytes does not fit in a producer batch")
            count += 1
        if count:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
