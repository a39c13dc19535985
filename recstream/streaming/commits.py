"""Committing source offsets only once every effect of the events before them is durable.

Faust commits what its streams acknowledged, and `take_events` acknowledges a batch as soon as the
agent asks for the next one: before a deferred table flush, a forwarded message's delivery or a
MongoDB write. For the topics our agents consume, the offset to commit is ours instead: each batch is
a ticket of {partition: last offset}; each sink (the table and forwarding flush, MongoDB) reports the
newest ticket it has made durable; a partition's commit advances to the newest ticket every sink has
passed. A sink that is down (MongoDB, say) holds the commit back, not the processing: after a crash
the worker replays from the held-back offset and the state's applied offsets skip what it holds.

Relies on faust-streaming's `Consumer._new_offset(tp)` (the offset a commit would move a partition
to), pinned in pyproject.toml and exercised by the kill -9 tests.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from faust.types import TP

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
    """Make the Faust consumer commit our limits for gated topics (once per consumer)."""
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
        done = [o for o in acked[tp] if o < limit]
        if done:
            acked[tp] = [o for o in acked[tp] if o >= limit]
            acked_index[tp].difference_update(done)
        return limit

    consumer._new_offset = new_offset  # type: ignore[attr-defined]
    consumer._recstream_gated = True  # type: ignore[attr-defined]
