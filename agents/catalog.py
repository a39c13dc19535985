"""Video metadata (keyed by video): the catalog table, Redis for serving (metadata, creators, fresh
videos) and MongoDB (durable). A tombstone on the videos topic takes its video down: the table keeps a
marker (so a rebuild keeps it down), Redis moves it to the removed set, MongoDB drops its document."""

from __future__ import annotations

from recstream import metrics
from recstream.agents.common import parse_batch, take_batches
from recstream.agents.pipeline import Pipeline
from recstream.records import Video, bound_ts
from recstream.streaming import channels
from recstream.streaming.app import app
from recstream.streaming.runtime import as_event, stores
from recstream.streaming.sinks import retry
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
    parsed = {id(e): v for e, v in await parse_batch([e for e in events if e.value is not None], Video)}
    latest: dict[str, tuple] = {}  # video -> (its newest event, metadata or a take-down marker)
    for event in events:  # batch order: each partition's messages in offset order, so the newest wins
        if event.value is None:  # a tombstone (DELETE /videos/{id}): the video is taken down
            video = event.key.decode() if isinstance(event.key, bytes) else event.key
            if video:
                latest[video] = (
                    event,
                    {"video_id": video, "removed_at": int(event.message.timestamp * 1000)},
                )
        elif (record := parsed.get(id(event))) is not None:
            record = bound_ts(record, int(event.message.timestamp * 1000), SKEW_MS)
            latest[record.video_id] = (event, record.model_dump())
    for video, (event, doc) in latest.items():
        with as_event(event):
            catalog[video] = doc  # a marker, not a deletion: replays and rebuilds keep the take-down
    live = {v: doc for v, (_e, doc) in latest.items() if "removed_at" not in doc}
    removed = [v for v, (_e, doc) in latest.items() if "removed_at" in doc]
    if live:
        await retry("redis", lambda: stores().write_catalog(live))
    if removed:
        await retry("redis", lambda: stores().remove_videos(removed))
    if latest:
        pipeline.mongo.stage({v: (None if v in removed else doc) for v, (_e, doc) in latest.items()})
    pipeline.ticket(events)
    metrics.messages_processed.labels(agent="catalog").inc(len(events))
