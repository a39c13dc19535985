"""Committing source offsets only once every effect of the events before them is durable.

Faust commits what its streams acknowledged, and `take_events` acknowledges a batch as soon as the
agent asks for the next one: before a deferred table flush, a forwarded message's delivery or a
MongoDB write. For the topics our agents consume, the offset to commit is ours instead: each batch is
a ticket of {partition: last offset}; each sink (the table and forwarding flush, MongoDB) reports the
newest ticket it has made durable; a partition's commit advances to the newest ticket every sink has
passed. A sink that is down (MongoDB, say) holds the commit back, not the processing: after a crash
the worker replays from the held-back offset and the state's applied offsets skip what it holds.

`install` also lists the gated partitions for Faust's commit (it commits only partitions it filed
acknowledgements for, and `delivery.ack_batch` files none for them), and after an assignment seeks a
gated partition with no committed offset to its first offset (see there why). `commit_now` commits a
revoked partition right after its final flush.

Relies on faust-streaming's `Consumer._new_offset(tp)` (the offset a commit would move a partition
to), `_filter_tps_with_pending_acks` and `seek_to_committed`, pinned in pyproject.toml and exercised by
the kill -9 and scale-out tests.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from aiokafka.errors import IllegalStateError
from faust.types import TP

log = logging.getLogger(__name__)

limits: dict[TP, int] = {}
"""Per source partition: the next offset to commit (everything below it is durable everywhere)."""
gated_topics: set[str] = set()


class CommitGate:
    """The tickets of one agent and the progress of each of its sinks."""

    def __init__(self, topic: str, sinks: Iterable[str]) -> None:
        gated_topics.add(topic)
        self.seq = 0
        self.pending: deque[tuple[int, dict[TP, int]]] = deque()
        self.done = dict.fromkeys(sinks, 0)

    def record(self, offsets: dict[TP, int]) -> int:
        """A batch is processed (its synchronous effects done): issue its ticket."""
        self.seq += 1
        if offsets:
            self.pending.append((self.seq, offsets))
        if not self.done:
            self._advance()
        return self.seq

    def mark(self, sink: str, seq: int) -> None:
        """`sink` made every ticket up to `seq` durable."""
        if seq > self.done[sink]:
            self.done[sink] = seq
            self._advance()

    def _advance(self) -> None:
        reached = min(self.done.values(), default=self.seq)
        while self.pending and self.pending[0][0] <= reached:
            _seq, offsets = self.pending.popleft()
            for tp, offset in offsets.items():
                if offset + 1 > limits.get(tp, -1):
                    limits[tp] = offset + 1

    def forget(self, tps: set[TP]) -> None:
        """Partitions this worker lost: their tickets go (the new owner replays them)."""
        for tp in tps:
            limits.pop(tp, None)
        self.pending = deque(
            (s, {tp: o for tp, o in offs.items() if tp not in tps}) for s, offs in self.pending
        )


def install(consumer: object) -> None:
    """Make the Faust consumer commit our limits for gated topics, and start a gated partition that
    has no committed offset from its first offset (once per consumer; before the first assignment's
    seek: `agents.common.take_batches` installs it as an agent starts)."""
    if getattr(consumer, "_recstream_gated", False):
        return
    original = consumer._new_offset  # type: ignore[attr-defined]
    acked, acked_index = consumer._acked, consumer._acked_index  # type: ignore[attr-defined]

    def new_offset(tp: TP) -> int | None:
        if tp.topic not in gated_topics:
            return original(tp)
        limit = limits.get(tp)
        if limit is None:
            return None
        # Faust's own bookkeeping of acknowledged offsets is not used for these partitions: trim it.
        done = [o for o in acked.get(tp, ()) if o < limit]
        if done:
            acked[tp] = [o for o in acked[tp] if o >= limit]
            acked_index[tp].difference_update(done)
        return limit

    # Faust commits only partitions it has acknowledgements filed for, and `delivery.ack_batch` files
    # none for gated topics: without this their offsets were never committed, so every rebalance and
    # restart replayed each partition from its first offset (exact, since values carry the offsets they
    # applied, but a replay of the whole log).
    pending_acks = consumer._filter_tps_with_pending_acks  # type: ignore[attr-defined]

    def tps_to_commit(topics: Any = None) -> Iterator[TP]:
        listed = set()
        for tp in pending_acks(topics):
            listed.add(tp)
            yield tp
        for tp in list(limits):
            if tp not in listed and (topics is None or tp in topics or tp.topic in topics):
                yield tp

    # After an assignment Faust seeks each partition to its committed offset, but aiokafka seeks only
    # where that offset is > 0: a partition with nothing committed stays where the fetcher already is,
    # and records fetched while the assignment was being set up (Faust pauses the partitions only
    # after the consumer starts fetching them) are gone from the agents' queues by then. A worker
    # joining a group whose partitions had no commit yet started past them, and those events were
    # never applied, while the state's applied offsets moved past them (scaling 1 -> 3 lost events).
    seek_to_committed = consumer.seek_to_committed  # type: ignore[attr-defined]

    async def seek_gated_to_committed() -> Mapping[Any, int | None]:
        committed = await seek_to_committed()
        uncommitted = [tp for tp, offset in committed.items() if tp.topic in gated_topics and not offset]
        if uncommitted:
            # To the first offset as a number: aiokafka's seek_to_beginning leaves the position unset
            # until its reset completes, and Faust's livelock check asserts on an unset position.
            # (`seek_wait` seeks in the consumer's own thread: aiokafka is not thread-safe.)
            try:
                earliest = await consumer._thread.earliest_offsets(*uncommitted)  # type: ignore[attr-defined]
                await consumer.seek_wait(earliest)  # type: ignore[attr-defined]
            except IllegalStateError as exc:  # no longer assigned: a new rebalance began, and seeks again
                log.info("seek of uncommitted partitions to their first offset abandoned (%s)", exc)
        return committed

    consumer._new_offset = new_offset  # type: ignore[attr-defined]
    consumer._filter_tps_with_pending_acks = tps_to_commit  # type: ignore[attr-defined]
    consumer.seek_to_committed = seek_gated_to_committed  # type: ignore[attr-defined]
    consumer._recstream_gated = True  # type: ignore[attr-defined]


async def commit_now(consumer: Any, tps: set[TP]) -> None:
    """Commit these partitions' limits now (a revocation, after the final flush: the next owner starts
    from there instead of the last timed commit). Best effort: a failed commit only means a longer
    replay, whose events the state skips as applied."""
    offsets = {tp: limits[tp] for tp in tps if tp in limits}
    try:
        if await consumer.force_commit(tps):
            log.info(
                "revoked: committed %s",
                ", ".join(f"{tp.topic}[{tp.partition}]@{o}" for tp, o in sorted(offsets.items())),
            )
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning(
            "commit of %s at revocation failed (%s); the next owner replays from the last commit",
            sorted(tps),
            exc,
        )
    for tp in tps:  # Faust forgot them as they were revoked; the commit filed them again
        consumer._committed_offset.pop(tp, None)
