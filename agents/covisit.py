"""Item-CF state (keyed by source video): forward-decayed directional neighbours, one table value per
source video; row-normalised lists in Redis (one string per video) that any web process reads."""

from __future__ import annotations

from recstream import metrics
from recstream.agents.common import (
    COVISIT_SOURCE,
    in_slices,
    take_batches,
    unpacked,
)
from recstream.agents.pipeline import Pipeline
from recstream.scoring import normalised_top
from recstream.streaming.app import app
from recstream.streaming.channels import covisit
from recstream.streaming.runtime import stores
from recstream.streamstate import StreamParams, apply_runs, new_neighbours
from recstream.tables import neighbours

_s = app.recstream_settings  # type: ignore[attr-defined]
PARAMS = StreamParams.from_settings(_s)
pipeline = Pipeline(
    "covisit",
    covisit.get_topic_name(),
    [neighbours],
    materialise=lambda t: materialise(t),
    write_interval_s=_s.neighbours_write_interval_s,
)


@app.agent(covisit, name="covisit")
async def covisit_agent(stream) -> None:  # noqa: ANN001
    async for events in take_batches(stream, _s.batch_size, _s.batch_within_s, pipeline.lock):
        await process(events)


async def process(events) -> None:  # noqa: ANN001
    touched: dict[str, int] = {}  # source video -> partition
    pairs = 0
    async for event, packed in unpacked(events, COVISIT_SOURCE):  # gives the loop back between slices
        c = event.message.partition
        for src, runs in packed:  # one source's pairs from one history batch
            state = neighbours.get(c, src)
            if state is None:
                state = new_neighbours()
            touched[src] = c
            pairs += apply_runs(state, runs, PARAMS)  # each group applied whole, or not at all
            neighbours.put(c, src, state)
    await pipeline.after_batch(events, touched)
    metrics.messages_processed.labels(agent="covisit").inc(pairs)


async def materialise(touched: dict[str, int]) -> None:
    """Row-normalised neighbour lists (absolute values) to Redis, one string per source video: each
    list's best `neighbours_materialised`, best first, shares of the whole list's weight."""
    async for chunk in in_slices(touched):
        await stores().write_neighbours(
            {
                src: normalised_top(neighbours.get(c, src)["n"], PARAMS.neighbours_materialised)
                for src, c in chunk
            }
        )
