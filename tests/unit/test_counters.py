"""Which of a history batch's events the dashboard's Redis counters still need: each offset once."""

from recstream.serving.stores import uncounted


def _batch(*offsets: tuple[int, int]) -> list[tuple[int, int, str]]:
    return [(p, o, f"e{p}.{o}") for p, o in offsets]


def test_events_past_the_counted_offsets_are_taken_with_the_newest_offset_per_partition() -> None:
    events, newest = uncounted(_batch((0, 4), (1, 7), (0, 5), (0, 6), (1, 8)), seen={0: 4, 1: 6})
    assert events == ["e1.7", "e0.5", "e0.6", "e1.8"]  # in batch order
    assert newest == {0: 6, 1: 8}


def test_an_offset_delivered_twice_in_one_batch_counts_once() -> None:
    # As test_scaleout's worker got it after a rebalance: partition 2's offset 3364 twice in a row.
    events, newest = uncounted(_batch((2, 3363), (2, 3364), (2, 3364), (2, 3365)), seen={2: 3311})
    assert events == ["e2.3363", "e2.3364", "e2.3365"]
    assert newest == {2: 3365}


def test_a_re_read_from_the_committed_offset_within_the_batch_counts_once() -> None:
    # Delivered 100..104, then the seek back to the committed offset 101 delivers 101..106 again.
    batch = _batch(*((3, o) for o in range(100, 105)), (4, 9), *((3, o) for o in range(101, 107)), (4, 9))
    events, newest = uncounted(batch, seen={3: 99})
    assert events == [f"e3.{o}" for o in range(100, 105)] + ["e4.9", "e3.105", "e3.106"]
    assert newest == {3: 106, 4: 9}


def test_nothing_to_count_when_redis_holds_the_whole_batch() -> None:
    assert uncounted(_batch((0, 1), (0, 2), (0, 2)), seen={0: 2}) == ([], {})
    assert uncounted([], seen={}) == ([], {})
