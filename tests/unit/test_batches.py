"""Which fetched events an agent may apply: only those of the current consumer generation."""

from types import SimpleNamespace

from faust.types import TP

from recstream.agents.common import current_events

A, B = TP("recstream.interactions", 0), TP("recstream.interactions", 1)


def _event(tp: TP, offset: int, generation: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(tp=tp, offset=offset, generation_id=generation))


def test_events_fetched_before_a_rebalance_are_dropped_even_when_the_partition_comes_back() -> None:
    # offset 900 was fetched in generation 3 and delivered late; after generation 4's assignment the
    # consumer re-reads partition A from the committed offset 500. Applying 900 first would make
    # 500..899 look already applied.
    events = [_event(A, 900, 3), _event(A, 500, 4), _event(A, 501, 4), _event(B, 70, 4)]
    current = current_events(events, generation=4, flowing=True, assigned={A, B})
    assert [(e.message.tp, e.message.offset) for e in current] == [(A, 500), (A, 501), (B, 70)]


def test_events_of_partitions_no_longer_held_are_dropped() -> None:
    events = [_event(A, 1, 4), _event(B, 2, 4)]
    assert [e.message.tp for e in current_events(events, 4, True, {B})] == [B]


def test_nothing_is_applied_while_a_rebalance_is_under_way() -> None:
    assert current_events([_event(A, 1, 4)], 4, flowing=False, assigned={A}) == []


def test_unpack_checks_every_entry_before_any_is_applied() -> None:
    import msgspec
    import pytest

    from recstream.agents.common import COVISIT_SOURCE, VIDEO_EVENT, unpack

    good = [["v1", 0, 12, "view", 1_000, 500, None], ["v2", 3, 13, "like", 1_001, None, None]]
    assert unpack(msgspec.msgpack.encode(good), VIDEO_EVENT) == [tuple(e) for e in good]
    sources = [["a", [[0, 1_000, 7, ["b"], [0.5]], [2, 1_001, 8, ["c", "d"], [1, 0.25]]]], ["e", []]]
    assert unpack(msgspec.msgpack.encode(sources), COVISIT_SOURCE) == [
        ("a", [(0, 1_000, 7, ["b"], [0.5]), (2, 1_001, 8, ["c", "d"], [1.0, 0.25])]),
        ("e", []),
    ]
    for bad in (
        b"{not json",
        b'{"a": 1}',
        msgspec.msgpack.encode([good[0], ["v", 0, "x", "view", 1, None, None]]),
        msgspec.msgpack.encode([good[0][:-1]]),
        msgspec.msgpack.encode([None]),
        msgspec.msgpack.encode([[*good[0], 1]]),
    ):
        with pytest.raises(ValueError):
            unpack(bad, VIDEO_EVENT)
    for bad in (
        msgspec.msgpack.encode([sources[0], ["a", [[0, 1_000, 8, ["c", "d"], [1.0]]]]]),  # lengths differ
        msgspec.msgpack.encode(
            [sources[0], ["a", [[0, 1_000, 8, ["c"], [1.0]], [0, 1_000, 9, ["c"], [1.0, 2.0]]]]]
        ),  # in a later group
        msgspec.msgpack.encode(
            [["a", ["b"], [0.5], 1_000, 0, 7]]
        ),  # a group of the older format (covisit-v4)
        msgspec.msgpack.encode([["a", [[0, 1_000, 7, [1], [0.5]]]]]),
        msgspec.msgpack.encode([["a", [[0, 1_000, 7, ["b"]]]]]),
    ):
        with pytest.raises(ValueError, match=r"\$\[") as raised:
            unpack(bad, COVISIT_SOURCE)
        assert "[0]" in str(raised.value) or "[1]" in str(raised.value)
    with pytest.raises(ValueError):  # the JSON of covisit-v5 and earlier is not this format
        unpack(b'[["a", [[0, 1000, 7, ["b"], [0.5]]]]]', COVISIT_SOURCE)


def test_packed_entries_come_back_bit_for_bit_in_messages_of_bounded_size() -> None:
    import random

    from recstream.agents.common import COVISIT_SOURCE, PACK_MAX_BYTES, pack, unpack

    rng = random.Random(5)
    entries = [
        (
            f"v{i}",
            [(rng.randrange(8), 1_700_000_000_000 + i, i * 1024, ["w1", "w2"], [rng.random(), 0.1 + 0.2])],
        )
        for i in range(12_000)
    ]
    records = pack(entries)
    assert len(records) > 1 and all(key is None and len(value) <= PACK_MAX_BYTES for key, value in records)
    assert [e for _k, value in records for e in unpack(value, COVISIT_SOURCE)] == entries
