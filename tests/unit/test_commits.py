"""The commit gate: an offset is committable only once every sink made the batches before it durable."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import TP

from recstream.streaming import commits


class FakeConsumer:
    """The parts of faust's Consumer (and its aiokafka thread) that `commits.install` wraps, recording
    what it is asked to do."""

    def __init__(self, acked: dict[TP, list[int]], committed: dict[TP, int | None] | None = None) -> None:
        self._acked = dict(acked)
        self._acked_index = {tp: set(offsets) for tp, offsets in acked.items()}
        self._committed = committed or {}
        self.sought: dict[Any, int] = {}
        self._thread = self

    def _new_offset(self, tp_: TP) -> int:
        return max(self._acked[tp_]) + 1

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Any:
        return (tp for tp in self._acked if topics is None or tp in topics or tp.topic in topics)

    async def seek_to_committed(self) -> dict[TP, int | None]:
        return dict(self._committed)

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: 100 + tp.partition for tp in tps}  # a log whose retention removed its start

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        self.sought.update(offsets)


def test_commit_waits_for_every_sink_and_for_older_tickets() -> None:
    commits.limits.clear()
    a, b = TP("t", 0), TP("t", 1)
    gate = commits.CommitGate("t", ["kafka", "mongo"])
    first = gate.record({a: 9})
    second = gate.record({a: 19, b: 4})
    assert commits.limits == {}
    gate.mark("kafka", second)  # tables flushed past both, MongoDB not yet
    assert commits.limits == {}
    gate.mark("mongo", first)
    assert commits.limits == {a: 10}  # the next offset to read: everything below is durable
    gate.mark("mongo", second)
    assert commits.limits == {a: 20, b: 5}


def test_lost_partitions_are_forgotten() -> None:
    commits.limits.clear()
    a, b = TP("u", 0), TP("u", 1)
    gate = commits.CommitGate("u", ["kafka"])
    seq = gate.record({a: 3, b: 7})
    gate.forget({b})
    gate.mark("kafka", seq)
    assert commits.limits == {a: 4}
    assert "u" in commits.gated_topics


def test_the_consumer_commits_our_limit_not_its_acks() -> None:
    commits.limits.clear()
    tp, other = TP("gated", 0), TP("free", 0)
    commits.CommitGate("gated", ["kafka"])

    consumer = FakeConsumer({tp: [0, 1, 2, 3], other: [5]})
    commits.install(consumer)
    assert consumer._new_offset(tp) is None  # acknowledged, but nothing durable yet
    commits.limits[tp] = 2
    assert consumer._new_offset(tp) == 2
    assert consumer._acked[tp] == [2, 3] and consumer._acked_index[tp] == {2, 3}
    assert consumer._new_offset(other) == 6  # other topics keep Faust's own rule


def test_gated_partitions_are_listed_for_faust_commit_though_nothing_acknowledged_them() -> None:
    """Faust commits only partitions it filed acknowledgements for; the batch acknowledgement files
    none for gated topics, so without the listing their offsets were never committed."""
    commits.limits.clear()
    tp, unlisted, other = TP("listed", 0), TP("listed", 1), TP("free", 0)
    commits.CommitGate("listed", ["kafka"])
    consumer = FakeConsumer({other: [5]})
    commits.install(consumer)
    commits.limits[tp] = 7
    assert set(consumer._filter_tps_with_pending_acks()) == {tp, other}
    assert list(consumer._filter_tps_with_pending_acks({tp})) == [tp]
    assert list(consumer._filter_tps_with_pending_acks({"listed"})) == [tp]
    assert unlisted not in set(consumer._filter_tps_with_pending_acks())  # nothing durable: no commit
    assert consumer._new_offset(tp) == 7


def test_a_gated_partition_without_a_committed_offset_is_sought_to_its_first_offset() -> None:
    """aiokafka seeks only to committed offsets above 0: the rest would start wherever the fetcher was."""
    commits.limits.clear()
    commits.CommitGate("seek", ["kafka"])
    never, zero, resumed, free = TP("seek", 0), TP("seek", 1), TP("seek", 2), TP("free", 0)
    consumer = FakeConsumer({}, committed={never: None, zero: 0, resumed: 42, free: None})
    commits.install(consumer)
    assert asyncio.run(consumer.seek_to_committed()) == {never: None, zero: 0, resumed: 42, free: None}
    assert consumer.sought == {never: 100, zero: 101}  # not the committed one, not other topics
