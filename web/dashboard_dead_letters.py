"""The dashboard's own Kafka consumer: how many dead letters the topic holds and the newest few.

The Pipeline view (web/dashboard.py) reads it; nothing here imports Faust.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from tenacity import AsyncRetrying, retry_if_result, stop_after_delay

from recstream.kafka.config import client_kwargs
from recstream.kafka.topics import topic_names
from recstream.settings import Settings

FIELDS = ("ts", "source_topic", "partition", "offset", "key", "reason")


def summarise(value: bytes) -> dict[str, Any]:
    """A dead letter as the page lists it: its fields, and the start of the message it carries."""
    try:
        doc = json.loads(value)
    except ValueError:  # not written by us: show it raw
        doc = {"value": value.decode(errors="replace"), "reason": "(not a DeadLetter record)"}
    return {k: doc.get(k) for k in FIELDS} | {"value": str(doc.get("value", ""))[:200]}


class DeadLetters:
    """How many dead letters the topic holds (all workers' together) and the newest few, read by one
    group-less consumer of the dashboard's own (started on first use, stopped with the app)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tp = TopicPartition(
            topic_names(settings).dead_letters, 0
        )  # one partition: kafka_admin.topic_specs
        self.consumer: AIOKafkaConsumer | None = None
        self.seen_end = -1
        self.recent: list[dict[str, Any]] = []
        self.lock = asyncio.Lock()

    async def read(self, keep: int = 5) -> dict[str, Any]:
        async with self.lock:
            if self.consumer is None:
                consumer = AIOKafkaConsumer(
                    **client_kwargs(self.settings), enable_auto_commit=False, request_timeout_ms=5000
                )
                try:
                    await consumer.start()
                except BaseException:
                    await consumer.stop()
                    raise
                consumer.assign([self.tp])
                # Paused but while tailing: an assigned partition keeps a 500 ms long-poll fetch open,
                # and every offset lookup waited behind it (~0.9 s per /api/pipeline).
                consumer.pause(self.tp)
                self.consumer = consumer
            first = (await self.consumer.beginning_offsets([self.tp]))[self.tp]
            last = (await self.consumer.end_offsets([self.tp]))[self.tp]
            if last != self.seen_end:  # fetch letters only when there are new ones
                self.recent = await self._tail(max(first, last - keep), last) if last > first else []
                self.seen_end = last
            return {"topic": self.tp.topic, "total": last - first, "recent": self.recent}

    async def _tail(self, start: int, end: int) -> list[dict[str, Any]]:
        """The letters at offsets [start, end), newest first."""
        assert self.consumer is not None
        consumer = self.consumer
        letters: list[dict[str, Any]] = []

        async def fetch() -> list[dict[str, Any]]:
            for msgs in (await consumer.getmany(self.tp, timeout_ms=300)).values():
                letters.extend(summarise(m.value) for m in msgs)
            return letters

        consumer.seek(self.tp, start)
        consumer.resume(self.tp)
        try:
            # Until every letter came, for two seconds at most: the page shows what came by then.
            await AsyncRetrying(
                retry=retry_if_result(lambda got: len(got) < end - start),
                stop=stop_after_delay(2),
                retry_error_callback=lambda state: state.outcome.result(),
            )(fetch)
        finally:
            consumer.pause(self.tp)
        return letters[::-1]

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
