"""The worker's own batch producer: POST /events, changelogs and internal topics in whole Kafka batches.

Faust's producer buffers and sends one message at a time (~100-130 µs each measured here); a
`BatchBuilder` filled in a loop and handed to aiokafka once costs a few µs per message.

aiokafka keeps one produce request in flight per broker and one queued batch per partition, so a
batch per caller would serialise concurrent callers (each POST /events waiting for the previous one's
round trip: ~5,000 events/s). Callers therefore append to a per-partition buffer, and one sender task
turns whatever accumulated into as few batches as fit: concurrent requests share round trips.
Idempotence and one lock per partition keep each partition's records in the order they were appended,
across retries, which the downstream de-duplication relies on (it skips what is not newer than what it
has applied, per source partition).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from recstream.kafka.config import client_kwargs
from recstream.settings import Settings

Record = tuple[bytes | None, bytes]


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
        self._buffers: dict[tuple[str, int], list[Record]] = {}
        self._waiters: dict[tuple[str, int], list[asyncio.Future]] = {}
        self._senders: dict[tuple[str, int], asyncio.Task] = {}

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            async with self._lock:
                if self._producer is None:
                    producer = AIOKafkaProducer(
                        **client_kwargs(self.settings),
                        acks="all",
                        enable_idempotence=True,
                        linger_ms=self.settings.producer_linger_ms,
                        max_batch_size=self.settings.producer_batch_bytes,
                        max_request_size=max(self.settings.producer_batch_bytes * 2, 1_048_576),
                        # A broker outage is waited out (the batch retries) rather than failed fast.
                        request_timeout_ms=120_000,
                        retry_backoff_ms=200,
                    )
                    _back_off_failed_metadata(producer, 0.2)
                    await producer.start()
                    self._producer = producer
        return self._producer

    async def send(self, topic: str, partition: int, records: Iterable[Record]) -> list[asyncio.Future]:
        """Queue (key, value) records for `topic[partition]`; returns a future that resolves to the
        RecordMetadata of the first record of the last batch holding them, once Kafka acknowledged
        every batch holding them (or raises if one failed: the caller re-sends)."""
        await self.producer()
        key = (topic, partition)
        waiter = asyncio.get_running_loop().create_future()
        self._buffers.setdefault(key, []).extend(records)
        self._waiters.setdefault(key, []).append(waiter)
        if key not in self._senders:
            self._senders[key] = asyncio.create_task(self._send_partition(key))
        return [waiter]

    async def _send_partition(self, key: tuple[str, int]) -> None:
        """Drain one partition's buffer for as long as it refills. While aiokafka holds the previous
        batch (lingering, or behind the request in flight), new records pile up in the buffer and go
        out together next: one batch per round trip however many callers fed it."""
        tp = TopicPartition(*key)
        try:
            while self._buffers.get(key):
                # Wait until aiokafka took the previous batch of this partition (the one slot it
                # queues per partition) so that everything that arrived meanwhile goes in the next one.
                pending = self._producer._message_accumulator._batches.get(tp) if self._producer else None
                if pending:
                    await pending[-1].wait_drain()
                records, waiters = self._buffers.pop(key), self._waiters.pop(key)
                try:
                    futures = await self._enqueue(key, records)
                except Exception as exc:
                    _fail(waiters, exc)
                    continue
                asyncio.ensure_future(_resolve(futures, waiters))
        finally:
            del self._senders[key]

    async def _enqueue(self, key: tuple[str, int], records: list[Record]) -> list[asyncio.Future]:
        producer = await self.producer()
        topic, partition = key
        futures: list[asyncio.Future] = []
        batch = producer.create_batch()
        count = 0
        for k, value in records:
            if batch.append(key=k, value=value, timestamp=None) is None:
                if count == 0:
                    raise ValueError(f"a record of {len(value)} bytes does not fit in a producer batch")
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch, count = producer.create_batch(), 0
                if batch.append(key=k, value=value, timestamp=None) is None:
                    raise ValueError(f"a record of {len(value)} bytes does not fit in a producer batch")
            count += 1
        if count:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures

    async def close(self) -> None:
        for task in list(self._senders.values()):
            task.cancel()
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()


def _fail(waiters: list[asyncio.Future], exc: BaseException) -> None:
    for waiter in waiters:  # every caller re-sends (sinks.Outbox)
        if not waiter.done():
            waiter.set_exception(exc)


async def _resolve(futures: list[asyncio.Future], waiters: list[asyncio.Future]) -> None:
    try:
        metas = await asyncio.gather(*futures)
    except Exception as exc:
        _fail(waiters, exc)
        return
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(metas[-1])


def _back_off_failed_metadata(producer: AIOKafkaProducer, backoff_s: float) -> None:
    """Wait `backoff_s` after a failed metadata refresh before the next one can start.

    With the broker down, aiokafka's sender asks for a metadata refresh whenever a queued batch's leader
    is unknown and loops as soon as it fails, with no backoff: a connection refused at once made one
    process log "Unable to update metadata" ~6,000 times a second and spin a core for the whole outage,
    which also slowed the broker's own restart. Delaying the failed update delays the sender too."""
    client = getattr(producer, "client", None)
    update = getattr(client, "_metadata_update", None)
    if update is None:  # another aiokafka: leave it as it is
        return

    async def update_or_back_off(cluster_metadata, topics):  # noqa: ANN001, ANN202
        updated = await update(cluster_metadata, topics)
        if not updated:
            await asyncio.sleep(backoff_s)
        return updated

    client._metadata_update = update_or_back_off
