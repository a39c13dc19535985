"""Video metadata (keyed by video): the catalog table, Redis for serving (metadata, creators, fresh
videos) and MongoDB (durable)."""

from __future__ import annotations

from recstream import channels, metrics
from recstream.agents.common import parse_batch, take_batches
from recstream.agents.pipeline import Pipeline
from recstream.app import app
from recstream.records import Video, bound_ts
from recstream.runtime import as_event, stores
from recstream.sinks import retry
from recstream.tables import catalog

_s = app.recstream_settings  # type: ignore[attr-defined]
SKEW_MS = int(_s.max_future_skew_s * 1000)
# Metadata is rare next to interactions: Faust's own table writes suffice (its producer is flushed
# before every offset commit). MongoDB is written on its own timer like every other sink.
pipeline = Pipeline("catalog", channels.videos.get_topic_name(), [], mongo="videos")


@app.agent(channels.videos, name="catalog")
async def catalog_agent(stream) -> None:  # noqa: ANN001
    async for events in take_batches(stream, _s.batch_size, _s.batch_within_s, pipeline.lock):
        await process(events)


async def process(events) -> None:  # noqa: ANN001
    latest: dict[str, dict] = {}
    for event, parsed in await parse_batch(events, Video):
        video = bound_ts(parsed, int(event.message.timestamp * 1000), SKEW_MS)
        doc = video.model_dump()
        with as_event(event):
            catalog[video.video_id] = doc
        latest[video.video_id] = doc
    if latest:
        await retry("redis", lambda: stores().write_catalog(latest))
        pipeline.mongo.stage(latest)
    pipeline.ticket(events)
    metrics.messages_processed.labels(agent="catalog").inc(len(events))
