"""What every topic-level producer (`recstream simulate`, `recstream replay`) shares: `Publisher`, the
batching Kafka producer, and `progress_bar`, its count, rate and elapsed time on stderr."""

from __future__ import annotations

import asyncio
import io
import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from recstream.records import Interaction, Video, encode

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer
    from tqdm import tqdm

    from recstream.settings import Settings


class PublishError(Exception):
    """Kafka refused or lost a message (the first such error; the rest of the run was still sent)."""


class Publisher:
    """One producer for videos (key video_id) and interactions (key user_id).

    `send` only appends to the producer's batch (awaiting just when its buffer is full); deliveries are
    checked by callback, so throughput is bounded by the broker, not by one round trip per message.
    """

    def __init__(self, settings: Settings) -> None:
        from recstream.kafka.topics import topic_names

        self.settings = settings
        self.topics = topic_names(settings)
        self.sent = 0
        self.error: BaseException | None = None
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Publisher:
        from aiokafka import AIOKafkaProducer

        from recstream.kafka.admin import ensure_topics
        from recstream.kafka.config import client_kwargs

        await ensure_topics(self.settings)
        # Batches up to 1 MiB with a few ms of linger: far fewer requests than messages. acks=all with
        # idempotence keeps each user's events in order even when a batch is retried.
        self._producer = AIOKafkaProducer(
            **client_kwargs(self.settings),
            linger_ms=5,
            max_batch_size=1 << 20,
            acks="all",
            enable_idempotence=True,
        )
        await self._producer.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._producer is not None
        try:
            if exc_type is None:
                await self._producer.flush()
        finally:
            await self._producer.stop()
        if exc_type is None and self.error is not None:
            raise PublishError(str(self.error)) from self.error

    async def video(self, video: Video) -> None:
        await self._send(self.topics.videos, video.video_id, encode(video))

    async def event(self, event: Interaction) -> None:
        await self._send(self.topics.interactions, event.user_id, encode(event))

    async def flush(self) -> None:
        assert self._producer is not None
        await self._producer.flush()

    async def _send(self, topic: str, key: str, value: bytes) -> None:
        assert self._producer is not None
        future = await self._producer.send(topic, value, key=key.encode())
        future.add_done_callback(self._delivered)
        self.sent += 1

    def _delivered(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None and self.error is None:
            self.error = future.exception()


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


def progress_bar(label: str, detail: str = "", quiet: bool = False, stream: TextIO | None = None) -> tqdm:
    """Count, rate and elapsed time of a publisher, on stderr: one line redrawn in place a few times a
    second on a terminal; a plain line every few seconds when stderr is a file or a pipe (CI logs,
    docker), so logs stay readable. `detail` (and later `set_postfix_str`) follows the numbers."""
    from tqdm import tqdm

    stream = stream if stream is not None else sys.stderr
    tty = stream.isatty()
    return tqdm(
        desc=label,
        unit=" events",
        file=stream if tty else _LogLines(stream),
        mininterval=TTY_REFRESH_S if tty else LOG_REFRESH_S,
        postfix=detail or None,
        disable=quiet,
    )
