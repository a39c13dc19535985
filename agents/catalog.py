"""The video catalog (keyed by video): metadata into a table, Redis (serving) and MongoDB (durable)."""

from __future__ import annotations

from recstream import channels, metrics
from recstream.agents.common import parse_batch
from recstream.app import app
from recstream.records import Video
from recstream.runtime import as_event, stores
from recstream.tables import catalog

_s = app.recstream_settings  # type: ignore[attr-defined]


@app.agent(channels.videos, name="catalog")
async def catalog_agent(stream) -> None:  # noqa: ANN001
    async for events in stream.take_events(_s.batch_size, within=_s.batch_within_s):
        await process(events)


async def process(events) -> None:  # noqa: ANN001
    latest: dict[str, dict] = {}
    for event, video in await parse_batch(events, Video):
        doc = video.model_dump()
        with as_event(event):
            catalog[video.video_id] = doc
        latest[video.video_id] = doc
    metrics.messages_processed.labels(agent="catalog").inc(len(events))
    if latest:
        await stores().write_catalog(latest)
        await stores().upsert_many("videos", latest)
