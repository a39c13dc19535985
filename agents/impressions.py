"""What serving showed each user (the impressions topic, keyed by user): how many times each video was
shown, for the most recent `shown_per_user` videos, so that a video shown `max_unengaged_impressions`
times without the user engaging with it is not shown to them again.

Serving publishes one `Shown` message per answer; this agent counts them per user in the `user-shown`
table (exact after a crash: each value carries the offset it has applied) and writes the videos past
the limit to Redis (`shown:{user}`), which serving reads with the user's history. A video the user
engaged with needs no count: serving never shows an engaged video again (the history and seen filter).
"""

from __future__ import annotations

from recstream import metrics
from recstream.agents.common import parse_batch, take_batches
from recstream.agents.pipeline import Pipeline
from recstream.records import Shown
from recstream.streaming import channels
from recstream.streaming.app import app
from recstream.streaming.runtime import stores
from recstream.streaming.sinks import retry
from recstream.streamstate import count_shown, overexposed
from recstream.tables import user_shown

_s = app.recstream_settings  # type: ignore[attr-defined]
pipeline = Pipeline("impressions", channels.impressions.get_topic_name(), [user_shown])


@app.agent(channels.impressions, name="impressions")
async def impressions_agent(stream) -> None:  # noqa: ANN001
    async for events in take_batches(stream, _s.batch_size, _s.batch_within_s, pipeline.lock):
        await process(events)


async def process(events) -> None:  # noqa: ANN001
    touched: dict[str, int] = {}  # user -> partition
    for event, record in await parse_batch(events, Shown):
        assert isinstance(record, Shown)
        p, offset = event.message.partition, event.message.offset
        state = user_shown.get(p, record.user_id) or {"s": {}, "o": -1}
        if offset > state["o"]:  # else counted before a crash
            count_shown(state["s"], record.videos, _s.shown_per_user)
            state["o"] = offset
        user_shown.put(p, record.user_id, state)
        touched[record.user_id] = p
    if touched:
        limit = _s.max_unengaged_impressions
        hidden = {u: overexposed(user_shown.get(p, u)["s"], limit) for u, p in touched.items()}
        await retry("redis", lambda: stores().write_overexposed(hidden))
    pipeline.ticket(events)
    metrics.messages_processed.labels(agent="impressions").inc(len(events))
