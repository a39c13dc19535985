"""Redis rebuilt from the tables when it lost its data (FLUSHALL, a restart without persistence, a new
instance): every view serving reads that a table holds is written again, without re-publishing
anything: histories, per-video stats and trending, neighbour lists, and the catalog
(metadata, creators, fresh videos).

How a worker notices: Redis holds a random token (`EPOCH_KEY`). Every `redis_check_interval_s` a worker
reads it; when it is gone, the first worker to look sets a new one, and every worker that sees a token
other than the one it last saw writes its own partitions again. A worker's first look adopts the token it
finds (Redis already holds what the log implies), unless there was none.

What has no table behind it restarts: the dashboard's per-second overview and per-video timelines
count from the next events on, and so do the seen filters: serving takes a user's seen videos as the
history (written again here: the last `history_length` engagements) plus the filter, which holds only
videos that left the history; those engaged with before the loss may be recommended again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

from recstream import metrics
from recstream.agents import catalog as catalog_agent
from recstream.agents import covisit, engagement, history
from recstream.redis_layout import EPOCH_KEY
from recstream.streaming.app import app
from recstream.streaming.runtime import stores
from recstream.streaming.tablecache import BatchTable
from recstream.tables import catalog, user_history

log = logging.getLogger(__name__)
_s = app.recstream_settings  # type: ignore[attr-defined]
CHUNK = 2_000
_epoch: str | None = None


def _owned(topic: str) -> set[int]:
    return {tp.partition for tp in (app.consumer.assignment() if app.consumer else ()) if tp.topic == topic}


def _ready() -> bool:
    """Partitions assigned and their tables recovered: what the tables hold is what the log implies."""
    recovery = getattr(app.tables, "recovery", None)
    return (
        app.consumer is not None and not app.rebalancing and (recovery is None or recovery.completed.is_set())
    )


def _chunks(items: Iterator[tuple[str, object]]) -> Iterator[dict]:
    chunk: dict = {}
    for key, value in items:
        chunk[key] = value
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = {}
    if chunk:
        yield chunk


def _keys(table: BatchTable, partitions: set[int]) -> dict[str, int]:
    return {key: p for p in partitions for key, _v in table.items(p)}


async def rematerialise() -> dict[str, int]:
    """Write every view of this worker's partitions to Redis again; returns how many keys per view."""
    written: dict[str, int] = {}
    pipeline = history.pipeline
    async with pipeline.lock:  # no batch half applied while we read the tables
        n = 0
        for p in _owned(pipeline.topic):
            for chunk in _chunks(user_history.items(p)):
                histories = {user: state["h"] for user, state in chunk.items()}
                await stores().write_user_state(histories, {})  # the filters hold only what left
                n += len(chunk)
                await asyncio.sleep(0)
        written["histories"] = n
    for name, pipeline, table in (
        ("video_stats", engagement.pipeline, engagement.video_engagement),
        ("neighbour_lists", covisit.pipeline, covisit.neighbours),
    ):
        async with pipeline.lock:
            keys = _keys(table, _owned(pipeline.topic))
            pipeline.pending.update(keys)
        await pipeline.write_serving()
        written[name] = len(keys)
    async with catalog_agent.pipeline.lock:
        n = 0
        for chunk in _chunks(iter(list(catalog.items()))):
            live = {v: doc for v, doc in chunk.items() if "removed_at" not in doc}
            if live:
                await stores().write_catalog(live)
            if removed := [v for v, doc in chunk.items() if "removed_at" in doc]:
                await stores().remove_videos(removed)
            n += len(chunk)
        written["videos"] = n
    return written


@app.timer(interval=_s.redis_check_interval_s)
async def watch_redis() -> None:
    global _epoch
    if not _ready():
        return
    try:
        token = await stores().redis.get(EPOCH_KEY)
        lost = token is None
        if lost:
            await stores().redis.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)  # the first worker to look
            token = await stores().redis.get(EPOCH_KEY)
    except Exception as exc:  # Redis down: the sinks retry their writes; look again next time
        log.debug("redis epoch check failed: %s", exc)
        return
    if token == _epoch or (_epoch is None and not lost):
        _epoch = token
        return
    log.warning(
        "Redis lost its data (epoch %s -> %s): writing this worker's views again from the tables",
        _epoch,
        token,
    )
    try:
        written = await rematerialise()
    except Exception:
        log.exception("rebuilding Redis from the tables failed; trying again")
        return
    _epoch = token
    metrics.redis_rebuilds.inc()
    log.warning("Redis rebuilt from the tables: %s", written)
