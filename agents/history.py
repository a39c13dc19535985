"""Per-user history: the first stop of every interaction (keyed by user).

Per batch it validates events (bad ones to the dead letters), updates each user's bounded history,
emits co-visitation pairs keyed by source video, forwards events keyed by video for the engagement
tables, and materialises histories, seen sets and overview counters to Redis.
"""

from __future__ import annotations

import time
from collections import defaultdict

from recstream import channels, metrics, scoring
from recstream.agents.common import parse_batch
from recstream.app import app
from recstream.records import CovisitBatch, Interaction, encode
from recstream.runtime import as_event, stores
from recstream.tables import user_history

_s = app.recstream_settings  # type: ignore[attr-defined]
PARAMS = scoring.EngagementParams(_s.completion_ratio, _s.fast_skip_ms)
dirty_users: set[str] = set()  # users whose history changed since the last MongoDB persist


@app.agent(channels.interactions, name="history")
async def history_agent(stream) -> None:  # noqa: ANN001
    async for events in stream.take_events(_s.batch_size, within=_s.batch_within_s):
        await process(events)


async def process(events) -> None:  # noqa: ANN001
    parsed = await parse_batch(events, Interaction)
    by_user: dict[str, list] = defaultdict(list)
    for event, record in parsed:
        by_user[record.user_id].append((event, record))

    pairs: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    histories: dict[str, list] = {}
    seen: dict[str, set[str]] = defaultdict(set)
    overview: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    active: dict[int, set[str]] = defaultdict(set)
    newest_ts = 0
    for user, items in by_user.items():
        history = list(user_history[user])
        for _event, record in sorted(items, key=lambda er: er[1].ts):
            weight = scoring.engagement_weight(record, PARAMS)
            for src, dst, w in scoring.covisit_pairs(history, record.video_id, weight, _s.covisit_lookback,
                                                     _s.covisit_recency):
                pairs[src][dst] += w
            history = scoring.update_history(history, record.video_id, record.ts, weight, _s.history_length)
            _count_overview(overview[record.ts // 1000], record)
            active[record.ts // 60_000].add(user)
            newest_ts = max(newest_ts, record.ts)
        with as_event(items[-1][0]):
            user_history[user] = history  # one changelog write per user per batch
        histories[user] = history
        # Re-adding the whole bounded history (not just this batch) lets the Redis seen set rebuild
        # itself from the table after Redis lost it.
        seen[user] = {e[0] for e in history}

    for event, record in parsed:
        await channels.video_events.send(key=record.video_id, value=event.value)
        metrics.events_processed.labels(type=record.type).inc()
    for src, dsts in pairs.items():
        batch = CovisitBatch(src=src, pairs={d: round(w, 6) for d, w in dsts.items()}, ts=newest_ts)
        await channels.covisit.send(key=src, value=encode(batch))
    metrics.messages_processed.labels(agent="history").inc(len(events))
    if histories:
        await stores().write_user_state(histories, seen)
        await stores().write_overview(overview, active)
        dirty_users.update(histories)
        now = time.time()  # event.message.timestamp: Kafka's CreateTime, in seconds (POST /events' send)
        for event, _record in parsed:
            metrics.freshness.labels(agent="history").observe(max(0.0, now - event.message.timestamp))


def _count_overview(bucket: dict[str, float], record: Interaction) -> None:
    bucket[record.type] += 1
    if record.type == "view":
        bucket["watch_time_ms"] += record.watch_time_ms or 0
        if scoring.is_completion(record, PARAMS):
            bucket["completions"] += 1
