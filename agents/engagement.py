"""Per-video engagement (keyed by video): lifetime counters, 60 s tumbling windows, 15 min panes of the
hourly sliding window, and the forward-decayed trending rank, in one table value per video;
materialised to Redis (absolute values) after every batch."""

from __future__ import annotations

from recstream import metrics
from recstream.agents.common import (
    VIDEO_EVENT,
    in_slices,
    take_batches,
    unpacked,
)
from recstream.agents.pipeline import Pipeline
from recstream.streaming.app import app
from recstream.streaming.channels import video_events
from recstream.streaming.runtime import stores
from recstream.streamstate import (
    Facts,
    StreamParams,
    apply_engagement,
    is_applied,
    new_engagement,
    stats_document,
)
from recstream.tables import video_engagement

_s = app.recstream_settings  # type: ignore[attr-defined]
PARAMS = StreamParams.from_settings(_s)
pipeline = Pipeline(
    "engagement",
    video_events.get_topic_name(),
    [video_engagement],
    mongo="video_stats",
    materialise=lambda touched: materialise(touched),
)


@app.agent(video_events, name="engagement")
async def engagement_agent(stream) -> None:  # noqa: ANN001
    async for events in take_batches(stream, _s.batch_size, _s.batch_within_s, pipeline.lock):
        await process(events)


async def process(events) -> None:  # noqa: ANN001
    touched: dict[str, int] = {}  # video -> partition
    entries = 0
    async for event, packed in unpacked(events, VIDEO_EVENT):  # gives the loop back between messages
        q = event.message.partition
        for video, p, offset, type_, ts, watch, duration in packed:
            state = video_engagement.get(q, video)
            if state is None:
                state = new_engagement()
            touched[video] = q
            entries += 1
            if not is_applied(state["a"], p, offset):  # else forwarded again after a crash upstream
                apply_engagement(state, Facts(type_, video, ts, watch, duration), p, offset, PARAMS)
            video_engagement.put(q, video, state)  # rewritten even when skipped: see BatchTable
    await pipeline.after_batch(events, touched)
    metrics.messages_processed.labels(agent="engagement").inc(entries)


async def materialise(touched: dict[str, int]) -> None:
    """Stats documents and trending ranks (absolute values) to Redis; the documents to MongoDB too."""
    async for chunk in in_slices(touched):
        docs, ranks = {}, {}
        for video, q in chunk:
            state = video_engagement.get(q, video)
            docs[video] = stats_document(video, state, PARAMS)
            if state["r"] is not None:
                ranks[video] = state["r"]
        await stores().write_video_stats(docs, ranks)
        pipeline.mongo.stage(docs)
