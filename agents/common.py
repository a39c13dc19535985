"""What every agent does with its input: parse it with the wire contract, or dead-letter it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, TypeVar

import msgspec
from faust.types import EventT
from pydantic import BaseModel, ValidationError

from recstream import metrics
from recstream.records import DeadLetter, encode
from recstream.streaming import channels, commits, delivery

log = logging.getLogger(__name__)
YIELD_EVERY = 256
"""Agents give the event loop back this often inside a batch, so that the HTTP views sharing it (POST
/events above all) are not held up for a whole batch: a burst of POSTs is accepted at full speed and the
agents catch up from Kafka."""
MATERIALISE_SLICE = 64
"""Keys a downstream agent materialises for serving between two turns of the event loop (~1-3 ms; at
256, slices of popular videos' neighbour lists held the loop 30 ms and more on a busy host)."""
DOWNSTREAM_SLICE = 64
"""Internal-topic entries a downstream agent applies between two turns of the event loop: an entry is a
whole source video's pairs, and 256 of them held the loop for 30 ms and more on a busy host, each time
a user's own event was ready to run."""
M = TypeVar("M", bound=BaseModel)


def _text(raw: object) -> str:
    if isinstance(raw, bytes | bytearray):
        return raw.decode("utf-8", errors="replace")
    return "" if raw is None else str(raw)


async def parse_batch(
    events: Sequence[EventT], model: type[M], also: type[BaseModel] | None = None
) -> list[tuple[EventT, BaseModel]]:
    """Validate each message as `model` (or, failing that, as `also`); anything unusable goes to the
    dead-letter topic with the reason `model` gave."""
    good: list[tuple[EventT, BaseModel]] = []
    for i, event in enumerate(events):
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        try:
            good.append((event, model.model_validate_json(event.value)))
        except (ValidationError, ValueError, TypeError) as exc:
            if also is not None:
                try:
                    good.append((event, also.model_validate_json(event.value)))
                    continue
                except (ValidationError, ValueError, TypeError):
                    pass
            await dead_letter(event, _reason(exc))
    return good


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())
    return f"{type(exc).__name__}: {exc}"


async def dead_letter(event: EventT, reason: str) -> None:
    msg = event.message
    letter = DeadLetter(
        source_topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=_text(event.key) or None,
        value=_text(event.value)[:10_000],
        reason=reason,
    )
    await channels.dead_letters.send(key=msg.topic, value=encode(letter))
    metrics.dead_letters.labels(topic=msg.topic).inc()
    log.warning("dead letter from %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)


PACK_MAX_ENTRIES = 2000
"""Entries per internal-topic message at most: many per message (one Kafka write per partition per
batch)."""
PACK_MAX_BYTES = 256 * 1024
"""Bytes per internal-topic message at most (an entry may hold many groups): far below Kafka's 1 MB
default, whatever the batch size."""
_ENCODER = msgspec.msgpack.Encoder()


def pack(entries: list) -> list[tuple[None, bytes]]:
    """Entries for one internal-topic partition as (key, value) records of at most PACK_MAX_ENTRIES
    entries and PACK_MAX_BYTES (a larger chunk is halved until it fits; one entry alone always goes).

    MessagePack, not JSON: internal topics are read only by our agents, and their bulk is weights;
    a float is 9 bytes copied instead of text printed and parsed (pack + unpack ~25 % cheaper)."""
    out: list[tuple[None, bytes]] = []
    chunks = [entries[i : i + PACK_MAX_ENTRIES] for i in range(0, len(entries), PACK_MAX_ENTRIES)]
    while chunks:
        chunk = chunks.pop(0)
        value = _ENCODER.encode(chunk)
        if len(value) > PACK_MAX_BYTES and len(chunk) > 1:
            half = len(chunk) // 2
            chunks[:0] = [chunk[:half], chunk[half:]]
        else:
            out.append((None, value))
    return out


class Shape:
    """What an internal topic's message holds: a MessagePack list of entries of one exact shape, decoded
    and checked in one pass (msgspec, in C). `check`, when given, also tests what a type cannot say
    (e.g. two lists of the same length) before any entry is applied."""

    def __init__(self, entry: Any, check: Callable[[Any], bool] | None = None, what: str = "") -> None:
        self.decoder = msgspec.msgpack.Decoder(list[entry])
        self.check, self.what = check, what

    def unpack(self, value: bytes) -> list:
        """The message's entries; ValueError (and nothing applied) when it is anything else."""
        entries = self.decoder.decode(value)  # msgspec's DecodeError and ValidationError are ValueErrors
        if self.check is not None:
            for i, entry in enumerate(entries):
                if not self.check(entry):
                    raise ValueError(f"{self.what} - at `$[{i}]`")
        return entries


VIDEO_EVENT = Shape(tuple[str, int, int, str, int, int | None, int | None])
"""An engagement entry: [video, source partition, source offset, type, ts, watch_time_ms, duration_ms]."""


def _runs_aligned(entry: Any) -> bool:
    """Every group's destinations and weights are as many. A plain loop: this runs for every group of
    every message, and `all()` over a generator took 1.5-1.9x as long (0.67-0.84 s against
    0.36-0.57 s for half of the replay workload's co-visitation messages)."""
    for run in entry[1]:
        if len(run[3]) != len(run[4]):
            return False
    return True


COVISIT_SOURCE = Shape(
    tuple[str, list[tuple[int, int, int, list[str], list[float]]]],
    _runs_aligned,
    "destinations and weights differ in length",
)
"""Co-visitation pairs of one source video from one history batch: [source video, [[origin partition,
ts, first pair's position, [neighbour, ...], [weight, ...]], ...]], each inner group one event's pairs
from that source (`streamstate.covisit_groups`), in log order. A popular source gets one entry per
batch, not one per event: its neighbours are read, checked and written once for all of them."""


def unpack(value: bytes, shape: Shape) -> list:
    """A packed internal message's entries, each checked against `shape` before any is applied: a
    message of anything else raises ValueError, and is then dead-lettered whole."""
    return shape.unpack(value)


class UserPath:
    """The user-facing path first. The history agent (a user's own events into their history, seen
    filter and co-visitation pairs) and the keyed-by-video agents downstream share one event loop; under
    a backlog the downstream ones always have work, and taking turns with them would let a user's own
    view wait behind thousands of other users' pairs. So downstream agents step aside between their
    messages while a history batch is being processed, and take the loop whenever history is idle:
    history runs at its own speed, downstream catches up on what is left. Nothing waits for downstream."""

    def __init__(self) -> None:
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Around a history batch."""
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()

    async def step_aside(self) -> None:
        """What a downstream agent does between messages: give the loop back, and wait out any history
        batch under way."""
        await asyncio.sleep(0)
        if not self._idle.is_set():
            await self._idle.wait()


user_path = UserPath()


async def in_slices(touched: dict[str, int]) -> AsyncIterator[list[tuple[str, int]]]:
    """A materialise's {key: partition} in slices of MATERIALISE_SLICE, stepping aside between: one
    write of thousands of keys held the event loop, and a user's event, for a few hundred ms."""
    items = list(touched.items())
    for i in range(0, len(items), MATERIALISE_SLICE):
        if i:
            await user_path.step_aside()
        yield items[i : i + MATERIALISE_SLICE]


async def unpacked(events: Sequence[EventT], shape: Shape) -> AsyncIterator[tuple[EventT, list[list]]]:
    """Each internal message with its entries, in slices of at most DOWNSTREAM_SLICE entries with the event
    loop given back (and a history batch under way waited out) before each: a message holds up to
    PACK_MAX_ENTRIES entries, and applying them in one go would hold the loop, and a user's own event,
    for as long. A message that is not what our agents write goes to the dead-letter topic with the
    reason, and the agent goes on."""
    for event in events:
        await user_path.step_aside()
        try:
            entries = unpack(event.value, shape)
        except (ValueError, TypeError) as exc:
            await dead_letter(event, _reason(exc))
            continue
        for i in range(0, len(entries), DOWNSTREAM_SLICE):
            if i:
                await user_path.step_aside()
            yield event, entries[i : i + DOWNSTREAM_SLICE]


async def take_batches(
    stream,
    max_: int,
    within: float,  # noqa: ANN001
    lock: asyncio.Lock,
) -> AsyncIterator[list[EventT]]:
    """The agent's events in batches of up to `max_`: what is queued at once when events were waiting
    already, else waiting at most `within` seconds to fill one.

    What `Stream.take_events` gives, read straight from the channel's queue: Faust's stream iterator
    costs several µs per event (its own futures, sensors, processors), most of a worker's CPU at
    thousands of events per second. Events are acknowledged once the caller is done with a batch;
    the offsets committed are `recstream.streaming.commits`'s, not these acknowledgements.

    The caller processes each batch holding `lock`, which the agent's revocation handler also takes
    (`agents.pipeline.Pipeline.on_revoked`): a rebalance never lands in the middle of a batch. Under
    the lock, events fetched before the latest rebalance are dropped, as Faust's own stream iterator
    does: after a partition is assigned again the consumer re-reads it from the committed offset, and
    a stale event delivered ahead of that (say, one whose delivery waited on a full buffer through the
    rebalance) would be applied out of order, making the events between look already applied.
    """
    channel = aiter(stream.channel)  # subscribes this agent's iterator to the topic's conductor
    queue = channel.queue
    loop = asyncio.get_running_loop()
    app = stream.app
    # Faust empties the queue whenever flow resumes, including when recovery ends and the consumer seeks
    # back to the committed offset; a fetch already under way may then deliver past the emptied events
    # and Faust drops their re-fetch as already read. Kept, they are applied in order (a re-fetched
    # duplicate is skipped by the applied offsets), and an older generation's are dropped below.
    queue._clear_on_resume = False
    app.flow_control._queues.discard(queue)
    consumer = app.consumer
    delivery.install(consumer)
    commits.install(consumer)  # before the first assignment seeks: see its docstring
    fetch_wait_ms = app.recstream_settings.consumer_fetch_max_wait_ms
    continuity: dict = {}  # _check_continuity's
    try:
        while True:
            # A turn between batches: with events waiting, `queue.get()` does not give the loop back, and
            # the end of one full batch and the start of the next ran as one step (up to ~90 ms).
            await asyncio.sleep(0)
            try:
                events = [await queue.get()]
            except StopAsyncIteration:  # Faust ends the channel at shutdown
                return
            delivery.limit_fetch_wait(consumer, fetch_wait_ms)
            # Wait for more only when the queue had run dry: events already waiting mean the agent is
            # behind, and lingering would only hold them longer (a batch then forms while the previous
            # one is processed). Idle, waiting `within` gathers a burst into one batch.
            linger = not queue.qsize()
            deadline = loop.time() + within
            while len(events) < max_:
                while queue.qsize() and len(events) < max_:
                    events.append(queue.get_nowait())
                remaining = deadline - loop.time()
                if len(events) >= max_ or remaining <= 0 or not linger:
                    break
                try:
                    events.append(await asyncio.wait_for(queue.get(), remaining))
                except (TimeoutError, StopAsyncIteration):
                    break
            async with lock:
                current = current_events(
                    events, app.consumer_generation_id, app.flow_control.is_active(), consumer.assignment()
                )
                if len(current) < len(events):
                    log.info(
                        "dropped %d of %d events fetched before a rebalance (re-read from the "
                        "committed offset)",
                        len(events) - len(current),
                        len(events),
                    )
                _check_continuity(current, continuity, consumer._committed_offset)
                try:
                    if current:
                        yield current
                finally:
                    delivery.ack_batch(app.consumer, events, commits.gated_topics)
    finally:
        app.topics.discard(channel)


def current_events(events: Sequence[EventT], generation: int, flowing: bool, assigned: set) -> list[EventT]:
    """The events that belong to this worker now: none during a rebalance (flow suspended), else those
    fetched in the current consumer generation from partitions it holds."""
    if not flowing:
        return []
    return [e for e in events if e.message.generation_id == generation and e.message.tp in assigned]


def _check_continuity(events: Sequence[EventT], continuity: dict, committed: Any) -> None:
    """Warn when the first event an agent is handed after a rebalance lies past the committed offset of
    its partition: the events in between would never be applied. Nothing in Faust should do that (the
    exactness tests fail if it loses events); if it does, the warning names the partition and offsets.
    (Later holes are not flagged: a transactional producer's commit markers take offsets too.)
    `continuity`: per partition, the consumer generation of the last event seen."""
    for event in events:
        msg = event.message
        if continuity.get(msg.tp) == msg.generation_id:
            continue
        continuity[msg.tp] = msg.generation_id
        expected = committed.get(msg.tp)
        if expected is not None and msg.offset > expected:
            log.warning(
                "%s: first event after a rebalance at offset %d, past the committed offset %d",
                msg.tp,
                msg.offset,
                expected,
            )
