"""Item-CF state (keyed by source video): forward-decayed directional neighbours, one table value per
source video; row-normalised lists in Redis (one string per video) that any web process reads."""

from __future__ import annotations

from recstream import metrics
from recstream.agents.common import (
    COVISIT_SOURCE,
    YIELD_EVERY,
    in_slices,
    take_batches,
    unpacked,
    user_path,
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


GROUP_RUNS = 50_000
"""Runs gathered from a batch's messages before they are applied: a source in many messages (a popular
video is in every history batch's) is read, merged and written once for all of them. Bounded so that a
backlog's batch of thousands of messages is not held decoded all at once."""


async def process(events) -> None:  # noqa: ANN001
    touched: dict[str, int] = {}  # source video -> partition
    pairs = 0
    gathered: dict[str, list] = {}  # source -> its runs from the messages so far, in log order
    held = 0
    async for event, packed in unpacked(events, COVISIT_SOURCE):  # gives the loop back between slices
        c = event.message.partition
        for src, runs in packed:  # one source's pairs from one history batch
            if src in gathered:
                gathered[src].extend(runs)
            else:
                gathered[src] = runs  # decoded for us alone: extended in place
                touched[src] = c  # a source is always on the same partition (keyed by it)
            held += len(runs)
        if held >= GROUP_RUNS:
            pairs += await _apply(gathered, touched)
            gathered, held = {}, 0
    pairs += await _apply(gathered, touched)
    await pipeline.after_batch(events, touched)
    metrics.messages_processed.labels(agent="covisit").inc(pairs)


async def _apply(gathered: dict[str, list], partitions: dict[str, int]) -> int:
    """Each source's runs applied in the order they came (the order message by message would apply
    them: `apply_runs` of two lists in turn is `apply_runs` of the two joined, bit for bit), stepping
    aside after every YIELD_EVERY runs: a popular source gathered from a backlog's messages holds
    thousands, and applying them in one go held the loop (and a user's own event) for up to ~0.5 s."""
    pairs = since = 0
    for src, runs in gathered.items():
        c = partitions[src]
        state = neighbours.get(c, src)
        if state is None:
            state = new_neighbours()
        for i in range(0, len(runs), YIELD_EVERY):
            if since >= YIELD_EVERY:
                await user_path.step_aside()
                since = 0
            part = runs[i : i + YIELD_EVERY] if len(runs) > YIELD_EVERY else runs
            pairs += apply_runs(state, part, PARAMS)  # each group applied whole, or not at all
            since += len(part)
        neighbours.put(c, src, state)
    return pairs


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
