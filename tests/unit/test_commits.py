"""The commit gate: an offset is committable only once every sink made the batches before it durable."""

from __future__ import annotations

from faust.types import TP

from recstream.streaming import commits


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

    class FakeConsumer:  # the two attributes of faust's Consumer the override touches
        def __init__(self) -> None:
            self._acked = {tp: [0, 1, 2, 3], other: [5]}
            self._acked_index = {tp: {0, 1, 2, 3}, other: {5}}

        def _new_offset(self, tp_: TP) -> int:
            return max(self._acked[tp_]) + 1

    consumer = FakeConsumer()
    commits.install(consumer)
    assert consumer._new_offset(tp) is None  # acknowledged, but nothing durable yet
    commits.limits[tp] = 2
    assert consumer._new_offset(tp) == 2
    assert consumer._acked[tp] == [2, 3] and consumer._acked_index[tp] == {2, 3}
    assert consumer._new_offset(other) == 6  # other topics keep Faust's own rule
