"""What every topic-level producer (`recstream simulate`, `recstream replay`) shares: `Publisher`, the
batching Kafka producer, and `progress_bar`, its count, rate and elapsed time on stderr."""

from __future__ import annotations

import asyncio
import io
import sys
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from recstream.records import Interaction, Video, encode

if TYPE_CHECKING:
    from tqdm import tqdm

    from recstream.kafka.batches import BatchProducer
    from recstream.settings import Settings

CHUNK_RECORDS = 4096
"""Records buffered before they are handed to the producer together."""
LINGER_S = 0.005
"""How long a record waits in the buffer at most when fewer than CHUNK_RECORDS follow it (a paced run)."""
PARTITIONS_REMEMBERED = 1 << 18
"""Keys whose partition is remembered per topic (murmur2 is pure Python; user ids repeat a lot)."""
MAX_IN_FLIGHT = 100_000
"""Records handed over but not yet acknowledged before the publisher waits: bounds memory when the broker
is slower than the source."""


class PublishError(Exception):
    """Kafka refused or lost a message (the first such error; the rest of the run was still sent)."""


class Publisher:
    """One producer for videos (key video_id) and interactions (key user_id).

    A record is only appended to its partition's buffer (the partition Kafka's default partitioner
    picks for its key); the buffers go to a `BatchProducer` every CHUNK_RECORDS records or LINGER_S
    after the first, which turns each into whole Kafka batches: no future or call into aiokafka per
    message. Every record of one key goes to one partition in the order it was given, and acks=all
    with idempotence keeps that order across retries. Failures are collected as acknowledgements
    come in and raised as `PublishError` on leaving the `async with`; `flush()` waits until
    everything given so far is acknowledged.
    """

    def __init__(self, settings: Settings) -> None:
        from recstream.kafka.topics import topic_names

        self.settings = settings
        self.topics = topic_names(settings)
        self.sent = 0
        self.error: BaseException | None = None
        self._producer: BatchProducer | None = None
        self._partitions: dict[str, int] = {}
        self._partition_of: dict[str, dict[bytes, int]] = {}
        self._buffers: dict[str, list[list[tuple[bytes, bytes]]]] = {}
        self._buffered = 0
        self._in_flight: deque[tuple[int, asyncio.Future]] = deque()
        self._in_flight_records = 0
        self._hand_over_lock = asyncio.Lock()
        self._linger: asyncio.TimerHandle | None = None
        self._lingering: set[asyncio.Task] = set()

    async def __aenter__(self) -> Publisher:
        from recstream.kafka.admin import ensure_topics
        from recstream.kafka.batches import BatchProducer

        await ensure_topics(self.settings)
        self._producer = BatchProducer(self.settings)
        try:
            producer = await self._producer.producer()
            for topic in (self.topics.videos, self.topics.interactions):
                self._partitions[topic] = len(await producer.partitions_for(topic))
                self._partition_of[topic] = {}
                self._buffers[topic] = [[] for _ in range(self._partitions[topic])]
        except BaseException:
            await self._producer.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._producer is not None
        try:
            if exc_type is None:
                await self.flush()
        finally:
            if self._linger is not None:
                self._linger.cancel()
            for task in self._lingering:
                task.cancel()
            await self._producer.close()
        if exc_type is None and self.error is not None:
            raise PublishError(str(self.error)) from self.error

    async def video(self, video: Video) -> None:
        topic, key = self.topics.videos, video.video_id.encode()
        self._buffers[topic][self._partition(topic, key)].append((key, encode(video)))
        await self._appended(1)

    async def event(self, event: Interaction) -> None:
        await self.encoded_events([(event.user_id.encode(), encode(event))])

    async def encoded_events(self, events: Iterable[tuple[bytes, bytes]]) -> None:
        """Interactions already encoded, as (user_id, `encode(event)`) pairs (what the sort holds);
        a chunk of up to a few thousand at a time."""
        topic = self.topics.interactions
        buffers, partition_of = self._buffers[topic], self._partition_of[topic]
        count = 0
        for user_id, value in events:  # the hot loop of a replay: `_partition` inlined for known users
            partition = partition_of.get(user_id)
            if partition is None:
                partition = self._partition(topic, user_id)
            buffers[partition].append((user_id, value))
            count += 1
        await self._appended(count)

    async def flush(self) -> None:
        """Wait until everything given so far is acknowledged (or failed: see `error`)."""
        await self._hand_over()
        while self._in_flight:
            await self._settle_oldest()

    def _partition(self, topic: str, key: bytes) -> int:
        from recstream.kafka.batches import partition_for

        known = self._partition_of[topic]
        partition = known.get(key)
        if partition is None:
            if len(known) >= PARTITIONS_REMEMBERED:
                known.clear()
            known[key] = partition = partition_for(key, self._partitions[topic])
        return partition

    async def _appended(self, count: int) -> None:
        self.sent += count
        self._buffered += count
        if self._buffered >= CHUNK_RECORDS:
            await self._hand_over()
            while self._in_flight and (
                self._in_flight[0][1].done() or self._in_flight_records > MAX_IN_FLIGHT
            ):
                await self._settle_oldest()
        elif self._buffered and self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(LINGER_S, self._linger_expired)

    def _linger_expired(self) -> None:
        self._linger = None
        task = asyncio.ensure_future(self._hand_over())
        self._lingering.add(task)
        task.add_done_callback(self._lingering.discard)

    async def _hand_over(self) -> None:
        """Give every buffer to the producer. One at a time (the lock), so that a partition's records
        reach the producer in the order they were appended."""
        assert self._producer is not None
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        async with self._hand_over_lock:
            taken = [
                (topic, partition, records)
                for topic, buffers in self._buffers.items()
                for partition, records in enumerate(buffers)
                if records
            ]
            self._buffers = {topic: [[] for _ in buffers] for topic, buffers in self._buffers.items()}
            self._buffered = 0
            for topic, partition, records in taken:
                try:
                    acked = await self._producer.send(topic, partition, records)
                except Exception as exc:
                    self._failed(exc)
                    continue
                self._in_flight_records += len(records)
                self._in_flight.extend((len(records) if i == 0 else 0, f) for i, f in enumerate(acked))

    async def _settle_oldest(self) -> None:
        count, future = self._in_flight.popleft()
        self._in_flight_records -= count
        try:
            await future
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc


TTY_REFRESH_S = 0.2
LOG_REFRESH_S = 5.0


class _LogLines(io.TextIOBase):
    """A log's view of tqdm: each in-place redraw ('\r' + status + padding) becomes a line of its own."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.strip()
        if line:  # tqdm also writes a bare '\n' or '\r' to end or clear its line
            self.stream.write(line + "\n")
            self.stream.flush()
        return len(text)


def progress_bar(
    label: str, detail: str = "", quiet: bool = False, stream: TextIO | None = None, unit: str = "events"
) -> tqdm:
    """Count, rate and elapsed time of a publisher, on stderr: one line redrawn in place a few times a
    second on a terminal; a plain line every few seconds when stderr is a file or a pipe (CI logs,
    docker), so logs stay readable. `detail` (and later `set_postfix_str`) follows the numbers."""
    from tqdm import tqdm

    stream = stream if stream is not None else sys.stderr
    tty = stream.isatty()
    return tqdm(
        desc=label,
        unit=" " + unit,
        file=stream if tty else _LogLines(stream),
        mininterval=TTY_REFRESH_S if tty else LOG_REFRESH_S,
        postfix=detail or None,
        disable=quiet,
    )
