"""Per-user history: the first stop of every interaction (keyed by user), and the user-facing path.

Per batch it validates events (bad ones to the dead letters), updates each user's bounded history
(skipping what the history already applied), materialises histories, seen sets, the dashboard's
per-second overview and per-video timeline to Redis, and forwards to the keyed-by-video agents one
internal message per partition: the events' engagement facts, and the co-visitation pairs. Its own
latency never waits on the engagement or co-visitation backlog: they are other agents on other topics.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from recstream import metrics, scoring
from recstream.agents.common import YIELD_EVERY, pack, parse_batch, take_batches, user_path
from recstream.agents.pipeline import Pipeline
from recstream.kafka.batches import partition_for
from recstream.records import Interaction, UserErasure, bound_ts
from recstream.redis_layout import ACTIVE_USERS_PREFIX, HISTORY_PROGRESS_KEY
from recstream.serving.stores import uncounted
from recstream.streaming import channels
from recstream.streaming.app import app
from recstream.streaming.runtime import stores
from recstream.streaming.sinks import retry
from recstream.streamstate import StreamParams, add_covisit_runs, add_to_counters, new_history
from recstream.tables import user_history

_s = app.recstream_settings  # type: ignore[attr-defined]
PARAMS = StreamParams.from_settings(_s)
SKEW_MS = int(_s.max_future_skew_s * 1000)
FRESHNESS = metrics.freshness.labels(agent="history")
PROGRESS_KEY = HISTORY_PROGRESS_KEY
pipeline = Pipeline("history", channels.interactions.get_topic_name(), [user_history], mongo="user_profiles")


@app.agent(channels.interactions, name="history")
async def history_agent(stream) -> None:  # noqa: ANN001
    async for events in take_batches(stream, _s.batch_size, _s.batch_within_s, pipeline.lock):
        with user_path.running():  # the keyed-by-video agents step aside meanwhile
            await process(events)


async def process(events) -> None:  # noqa: ANN001
    parsed = [
        (
            event,
            bound_ts(record, int(event.message.timestamp * 1000), SKEW_MS)
            if isinstance(record, Interaction)
            else record,
        )
        for event, record in await parse_batch(events, Interaction, also=UserErasure)
    ]
    erased: set[str] = set()  # users erased by this batch (erased first; events after it start anew)
    touched: dict[str, int] = {}  # user -> partition
    left: dict[str, set[str]] = defaultdict(set)  # user -> videos that left the history: the seen filter
    to_engagement: dict[int, list[list]] = defaultdict(list)
    by_source: dict[str, list[tuple]] = defaultdict(list)  # source video -> its groups, in log order
    counted: list[tuple[int, int, Interaction]] = []  # (partition, offset, record) for Redis counters
    by_type: dict[str, int] = defaultdict(int)
    n_video, n_covisit = channels.video_events_partitions, channels.covisit_partitions
    for i, (event, record) in enumerate(parsed):  # batch order: each partition's events in offset order
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        p, offset = event.message.partition, event.message.offset
        if isinstance(record, UserErasure):
            # Everything about the user goes: table value (a changelog tombstone at the next flush),
            # Redis and MongoDB below. A replay applies their earlier events again and then this.
            user_history.put(p, record.erase_user, None)
            touched.pop(record.erase_user, None)
            left.pop(record.erase_user, None)
            erased.add(record.erase_user)
            continue
        user = record.user_id
        state = user_history.get(p, user)
        if state is None:
            state = new_history()
        touched[user] = p
        counted.append((p, offset, record))
        if offset <= state["o"]:  # applied before a crash: already in the history and forwarded
            user_history.put(p, user, state)
            continue
        weight = scoring.engagement_weight(record, PARAMS.engagement)
        leaving = add_covisit_runs(by_source, state, record.video_id, record.ts, weight, p, offset, PARAMS)
        if leaving is not None:
            left[user].add(leaving)
        user_history.put(p, user, state)
        to_engagement[partition_for(record.video_id.encode(), n_video)].append(
            [record.video_id, p, offset, record.type, record.ts, record.watch_time_ms, record.duration_ms]
        )
        by_type[record.type] += 1

    to_covisit: dict[int, list[tuple]] = defaultdict(list)
    for src, runs in by_source.items():
        to_covisit[partition_for(src.encode(), n_covisit)].append((src, runs))
    # A send that does not wait gives the loop nothing: one turn per partition, so that packing a full
    # batch's forwards (up to ~130 ms on a busy host) does not hold up the requests being served.
    for partition, entries in to_engagement.items():
        await asyncio.sleep(0)
        await pipeline.outbox.send(channels.video_events.get_topic_name(), partition, pack(entries))
    for partition, entries in to_covisit.items():
        await asyncio.sleep(0)
        await pipeline.outbox.send(channels.covisit.get_topic_name(), partition, pack(entries))

    if erased:
        await retry("redis", lambda: stores().erase_users(sorted(erased)))
        pipeline.mongo.stage(dict.fromkeys(erased))  # None: the profile is deleted
    if touched:
        histories = {u: user_history.get(p, u)["h"] for u, p in touched.items()}
        await retry("redis", lambda: stores().write_user_state(histories, left))
        await retry("redis", lambda: _write_counters(counted))
        pipeline.mongo.stage(
            {u: {"history": h, "updated_ms": max((e[1] for e in h), default=0)} for u, h in histories.items()}
        )
    pipeline.ticket(events)
    for type_, count in by_type.items():
        metrics.events_processed.labels(type=type_).inc(count)
    metrics.messages_processed.labels(agent="history").inc(len(events))
    now = time.time()  # event.message.timestamp: Kafka's CreateTime, in seconds (POST /events' send)
    metrics.observe_many(FRESHNESS, [max(0.0, now - event.message.timestamp) for event, _r in parsed])


async def _write_counters(counted: list[tuple[int, int, Interaction]]) -> None:
    """Add this batch's events to the per-second overview and per-video timeline counters in Redis,
    exactly once: only events after the offsets Redis has already counted, in the same atomic script
    that moves those offsets."""
    if not counted:
        return
    partitions = sorted({p for p, _o, _r in counted})
    seen = await stores().read_progress(PROGRESS_KEY, partitions)
    overview: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    active: dict[str, set[str]] = defaultdict(set)
    # Past the offsets Redis counted, and each offset once: a batch may hold one twice (a re-fetch).
    records, newest = uncounted(counted, seen)
    for record in records:
        add_to_counters(overview, record, PARAMS)
        active[f"{ACTIVE_USERS_PREFIX}{record.ts // 60_000}"].add(record.user_id)
    if newest:
        applied = await stores().add_counters(PROGRESS_KEY, seen, newest, overview, active)
        if not applied:  # another owner moved the offsets meanwhile (a rebalance): read them again
            raise RuntimeError("Redis counter offsets changed under us; recounting")
