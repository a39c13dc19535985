"""What every stateful agent shares: its commit gate, its Kafka outbox, its periodic flush of tables and
forwarded messages, its MongoDB sinks, and what happens when partitions move or the worker stops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

from faust.types import TP, EventT

from recstream import metrics
from recstream.agents.common import user_path
from recstream.streaming import commits, delivery
from recstream.streaming.app import app
from recstream.streaming.runtime import producer, shutdown_hooks, stores
from recstream.streaming.sinks import Flusher, MongoSink, Outbox, retry
from recstream.streaming.tablecache import BatchTable

_s = app.recstream_settings  # type: ignore[attr-defined]
WRITE_SHARE = _s.serving_write_max_share
QUIET_S = 0.5
"""No batch for this long and a pipeline's backlog is over. Under load a downstream agent gets a batch
after every history batch, tens of ms apart; after a replay or a burst it gets none."""


def write_due(now: float, next_write: float, written_at: float, last_batch: float, interval_s: float) -> bool:
    """Whether what serving reads is due a write: once the bounded share's wait (`next_write`) has
    passed, or, when the pipeline has had no batch for `QUIET_S`, once its interval has. The share keeps
    a backlog's catching up from being eaten by rewriting the same keys; with the backlog over there is
    nothing left to protect, and waiting it out (9x the last write) held the final state of a replay
    out of Redis for 6.7 s after the agents had applied every event (0 s with this rule: replay-only
    runs of 1,000,000 events, 2026-12-06, timed by `benchmarks/streaming.py`'s write clock)."""
    return now >= next_write or (now - last_batch >= QUIET_S and now >= written_at + interval_s)


class Pipeline:
    """One agent's durability: tables and forwards flushed on a timer (sink "kafka"), MongoDB documents
    written on another (sink "mongo"), the source offsets committed only past what both hold."""

    def __init__(
        self,
        name: str,
        topic: str,
        tables: Iterable[BatchTable],
        mongo: str | None = None,
        materialise: Callable[[dict[str, int]], Awaitable[None]] | None = None,
        write_interval_s: float | None = None,
    ) -> None:
        """`materialise(keys)`, when given, writes what serving reads for {key: partition} touched
        since the last call; it runs at most every `write_interval_s` (default
        `serving_write_interval_s`; sink "redis")."""
        self.name, self.topic = name, topic
        self.tables = list(tables)
        sinks = ["kafka"] + (["mongo"] if mongo else []) + (["redis"] if materialise else [])
        self.gate = commits.CommitGate(topic, sinks)
        self.outbox = Outbox(producer())
        self.flusher = Flusher(self.gate, self.outbox, self.tables, pause=user_path.step_aside)
        self.mongo = (
            MongoSink(
                mongo,
                self.gate,
                lambda c, d: stores().upsert_many(c, d),
                _s.persist_max_share,
                ready=lambda: stores().ping_mongo(),
            )
            if mongo
            else None
        )
        self.materialise = materialise
        self.write_interval_s = write_interval_s or _s.serving_write_interval_s
        self.pending: dict[str, int] = {}
        self._next_write = 0.0
        self._written_at = 0.0  # when the last write ended
        self._last_batch = 0.0  # when the last batch ended
        self._write_lock = asyncio.Lock()
        self.lock = asyncio.Lock()
        """Held while a batch is processed (`agents.common.take_batches`) and while partitions are
        revoked: a revocation flushes whole batches, never half of one."""
        pipelines.append(self)

    async def after_batch(self, events: Sequence[EventT], touched: dict[str, int]) -> None:
        """Issue the batch's ticket; write the keys touched since the last write if it is time."""
        self.pending.update(touched)
        self.ticket(events)
        self._last_batch = now = asyncio.get_running_loop().time()
        if now >= self._next_write:
            await self.write_serving()

    def write_due(self) -> bool:
        """`write_due` for this pipeline, now (the timer's test between batches)."""
        now = asyncio.get_running_loop().time()
        return write_due(now, self._next_write, self._written_at, self._last_batch, self.write_interval_s)

    async def write_serving(self) -> None:
        """Coalesced: a key touched by several batches in an interval is written once."""
        if self.materialise is None:
            return
        loop = asyncio.get_running_loop()
        async with self._write_lock:
            upto, pending = self.gate.seq, self.pending
            self.pending = {}
            took = 0.0
            if pending:

                async def attempt() -> None:
                    nonlocal took
                    started = loop.time()
                    await self.materialise(pending)
                    took = loop.time() - started

                await retry("redis", attempt)
            # A bounded share of the time writing: under a backlog, writes grow rarer and larger
            # (each key once per write), so catching up is not eaten by rewriting the same keys.
            # `took` is the attempt that succeeded: counting a Redis outage's retries in it put the
            # next write 9x the outage away (84 s after a 9 s outage), stale lists all that time.
            self._written_at = loop.time()
            self._next_write = self._written_at + max(self.write_interval_s, took * (1 / WRITE_SHARE - 1))
            self.gate.mark("redis", upto)

    def ticket(self, events: Sequence[EventT]) -> int:
        """The batch's synchronous effects (state in memory, Redis, forwards sent) are done."""
        commits.install(app.consumer)
        offsets: dict[TP, int] = {}
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            if offset > offsets.get(tp, -1):
                offsets[tp] = offset
        return self.gate.record(offsets)

    async def flush(self, holding_lock: bool = False) -> None:
        """Tables and forwards made durable, taken between two batches (`holding_lock`: the caller
        holds `self.lock` already)."""
        await self.flusher.flush(None if holding_lock else self.lock)
        metrics.flushes.labels(agent=self.name).inc()

    async def on_revoked(self, revoked: set[TP]) -> None:
        mine = {tp for tp in revoked if tp.topic == self.topic}
        if not mine:
            return
        async with self.lock:  # the batch under way finishes first
            await self.write_serving()  # before the cache of those partitions goes
            await self.flush(holding_lock=True)  # the next owner starts from the freshest state we have
            # Faust committed before this flush: commit what it made durable, or the next owner replays it.
            await commits.commit_now(app.consumer, mine)
            for table in self.tables:
                table.drop_partitions({tp.partition for tp in mine})
            self.gate.forget(mine)


pipelines: list[Pipeline] = []


@app.timer(interval=_s.state_flush_interval_s)
async def flush_state() -> None:
    for pipeline in pipelines:
        await pipeline.flush()


@app.timer(interval=_s.serving_write_interval_s)
async def write_serving() -> None:
    for pipeline in pipelines:
        if pipeline.write_due() and (
            pipeline.pending or pipeline.gate.done.get("redis", pipeline.gate.seq) < pipeline.gate.seq
        ):
            await pipeline.write_serving()


@app.timer(interval=_s.persist_interval_s)
async def write_mongo() -> None:
    for pipeline in pipelines:
        if pipeline.mongo is not None and pipeline.mongo.due():
            await pipeline.mongo.write()


@app.on_partitions_revoked.connect
async def _on_revoked(app, revoked: set[TP], **kwargs) -> None:  # noqa: ANN001 - Faust signal signature
    delivery.forget_buffered(app.consumer, revoked)
    for pipeline in pipelines:
        await pipeline.on_revoked(revoked)


async def _on_shutdown() -> None:
    for pipeline in pipelines:
        await pipeline.write_serving()
        await pipeline.flush()
        if pipeline.mongo is not None:
            await pipeline.mongo.write()


shutdown_hooks.append(_on_shutdown)
