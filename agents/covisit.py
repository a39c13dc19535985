"""Item-CF state (keyed by source video): decayed top-K directional neighbours, row-normalised into
Redis sorted sets that any web process reads."""

from __future__ import annotations

from collections import defaultdict

from recstream import metrics, scoring
from recstream.agents.common import parse_batch
from recstream.app import app
from recstream.channels import covisit
from recstream.records import CovisitBatch
from recstream.runtime import as_event, stores
from recstream.tables import neighbours

_s = app.recstream_settings  # type: ignore[attr-defined]


@app.agent(covisit, name="covisit")
async def covisit_agent(stream) -> None:  # noqa: ANN001
    async for events in stream.take_events(_s.batch_size, within=_s.batch_within_s):
        await process(events)


async def process(events) -> None:  # noqa: ANN001
    by_src: dict[str, list] = defaultdict(list)
    for event, record in await parse_batch(events, CovisitBatch):
        by_src[record.src].append((event, record))
    normalised: dict[str, dict[str, float]] = {}
    for src, items in by_src.items():
        pairs: dict[str, float] = defaultdict(float)
        for _event, record in items:
            for dst, w in record.pairs.items():
                pairs[dst] += w
        now = max(r.ts for _, r in items)
        merged = scoring.merge_neighbours(neighbours[src], pairs.items(), now, _s.covisit_half_life_s,
                                          _s.neighbours_per_video)
        with as_event(items[-1][0]):
            neighbours[src] = merged
        normalised[src] = scoring.normalise_neighbours(merged)
    metrics.messages_processed.labels(agent="covisit").inc(len(events))
    if normalised:
        await stores().write_neighbours(normalised)
