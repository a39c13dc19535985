"""Where the agents' effects go, each with its own progress: Kafka (changelogs and internal topics),
MongoDB, and the retry every sink write goes through.

A failed write is retried with backoff until it succeeds (counted in `recstream_sink_retries_total`);
nothing is acknowledged before it is durable (`recstream.streaming.commits`). MongoDB lags on its own timer, so
MongoDB being down holds back only MongoDB (and the offset commit), never the tables or Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from recstream import metrics
from recstream.kafka.batches import BatchProducer
from recstream.streaming.commits import CommitGate
from recstream.streaming.tablecache import BatchTable, give_turn

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BACKOFF_S = 2.0


async def retry(sink: str, write: Callable[[], Awaitable[T]]) -> T:
    """Run `write` until it succeeds, backing off from 50 ms to 2 s between tries."""
    delay = 0.05
    while True:
        try:
            return await write()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the dependency is down or failing: wait and try the same write again
            metrics.sink_retries.labels(sink=sink).inc()
            log.warning("%s write failed (%s: %s); retrying in %.2fs", sink, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)


class Outbox:
    """Kafka writes of one agent: sent at once, awaited (and re-sent if they failed) at settle time."""

    def __init__(self, producer: BatchProducer) -> None:
        self.producer = producer
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes]], list[asyncio.Future]]] = []

    async def send(self, topic: str, partition: int, records: list[tuple[bytes | None, bytes]]) -> None:
        futures = await retry("kafka", lambda: self.producer.send(topic, partition, records))
        self.sent.append((topic, partition, records, futures))

    async def settle(self) -> list[tuple[str, int, int]]:
        """Wait until everything sent so far is acknowledged; returns (topic, partition, last offset)."""
        sent, self.sent = self.sent, []
        acked: list[tuple[str, int, int]] = []
        for topic, partition, records, futures in sent:
            while True:
                try:
                    metas = await asyncio.gather(*futures)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    metrics.sink_retries.labels(sink="kafka").inc()
                    log.warning("kafka delivery to %s[%d] failed (%s); re-sending", topic, partition, exc)
                    await asyncio.sleep(0.2)
                    futures = await retry(
                        "kafka", lambda t=topic, p=partition, r=records: self.producer.send(t, p, r)
                    )
            if metas:
                acked.append((topic, partition, metas[-1].offset))
        return acked


class Flusher:
    """Periodically makes one agent's state durable: its forwarded messages delivered, its tables'
    dirty keys in RocksDB and the changelog; then tells the commit gate (sink "kafka")."""

    def __init__(
        self,
        gate: CommitGate,
        outbox: Outbox,
        tables: Iterable[BatchTable],
        pause: Callable[[], Awaitable[None]] = give_turn,
    ) -> None:
        """`pause`: what encoding awaits between slices (`BatchTable.write_local`)."""
        self.gate, self.outbox, self.tables = gate, outbox, list(tables)
        self.pause = pause
        self._lock = asyncio.Lock()

    async def flush(self, batch_lock: asyncio.Lock | None = None) -> None:
        """`batch_lock`: the agent's per-batch lock, unless the caller holds it already. The tables are
        taken between two batches, never in the middle of one: a history batch gives the event loop
        back while it applies events, and a value taken half way would hold events (offsets marked
        applied) whose forwarded messages the batch had not sent yet; after a crash the replay would
        skip them and the agents downstream would never see them. The batch lock is held only while
        the dirty keys are taken (the tables' `snapshot` copies), not while they are written."""
        async with batch_lock or contextlib.nullcontext():
            # Lock order: the batch lock, then this one (Pipeline.on_revoked holds the batch lock and
            # flushes). Flushes write in the order they took: an older take never overwrites a newer.
            await self._lock.acquire()
            upto = self.gate.seq
            taken = [(table, table.take_dirty()) for table in self.tables]
        try:
            changelogs: dict[tuple[str, int], BatchTable] = {}
            for table, dirty in taken:
                for partition, records in (await table.write_local(dirty, self.pause)).items():
                    await self.outbox.send(table.changelog_topic, partition, records)
                    changelogs[(table.changelog_topic, partition)] = table
            for topic, partition, offset in await self.outbox.settle():
                table = changelogs.get((topic, partition))
                if table is not None:
                    table.set_persisted_offset(partition, offset)
            self.gate.mark("kafka", upto)
        finally:
            self._lock.release()


class MongoSink:
    """Documents of one collection changed since the last write, written in bulk on a timer.

    At most `max_share` of the time goes to writing: after a write that took d seconds the next is not
    due for d x (1/share - 1). Idle, writes are small and the timer rules; under a backlog (a replay)
    they grow and grow rarer, each document written once for many batches. Written every 2 s, a
    replay's user profiles cost the MongoDB server (nx-27017, Python) a third of a core and the worker
    one BSON document per user per 2 s, for documents rewritten again 2 s later."""

    def __init__(
        self,
        collection: str,
        gate: CommitGate,
        upsert: Callable[[str, Mapping[str, Mapping[str, Any]]], Awaitable[int]],
        max_share: float = 1.0,
        ready: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """`ready`: awaited before each write and left out of its timing (a ping): waiting for a server
        that is coming back from an outage is not time spent writing. Timed, a 5 s wait for the server
        put the next write 45 s away, MongoDB stale all that time."""
        self.collection, self.gate, self.upsert, self.ready = collection, gate, upsert, ready
        self.docs: dict[str, Mapping[str, Any]] = {}
        self._lock = asyncio.Lock()
        self._rest_after_write = 1 / max_share - 1
        self._next_write = 0.0

    def stage(self, docs: Mapping[str, Mapping[str, Any]]) -> None:
        self.docs.update(docs)

    def due(self) -> bool:
        """Whether the timer should write now (the share above); a shutdown writes regardless."""
        return asyncio.get_running_loop().time() >= self._next_write

    async def write(self) -> None:
        """One attempt; on failure the documents stay staged (newer versions win) for the next tick."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            upto, docs = self.gate.seq, self.docs
            self.docs = {}
            started = loop.time()
            try:
                if docs:
                    if self.ready is not None:
                        await self.ready()
                        started = loop.time()
                    await self.upsert(self.collection, docs)
            except Exception as exc:
                self.docs = {**docs, **self.docs}
                metrics.sink_retries.labels(sink="mongo").inc()
                log.warning("MongoDB write of %d %s failed (%s); will retry", len(docs), self.collection, exc)
                return
            metrics.mongo_documents.labels(collection=self.collection).inc(len(docs))
            now = loop.time()
            self._next_write = now + (now - started) * self._rest_after_write
            self.gate.mark("mongo", upto)
