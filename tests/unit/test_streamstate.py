"""The streaming state's pure functions: order independence, de-duplication, windows, pruning."""

from __future__ import annotations

import math
import random

import pytest

from recstream import scoring
from recstream.streamstate import (
    Facts,
    StreamParams,
    apply_engagement,
    apply_pair,
    is_applied,
    new_engagement,
    new_neighbours,
    stats_document,
)

P = StreamParams()
HOUR_MS = 3_600_000


def test_trend_rank_is_a_sum_whatever_the_order() -> None:
    rng = random.Random(1)
    events = [
        (rng.choice([1.0, 2.0, 3.0]), 1_700_000_000_000 + rng.randrange(10 * HOUR_MS)) for _ in range(500)
    ]
    ranks = []
    for _ in range(3):
        rng.shuffle(events)
        rank = None
        for w, ts in events:
            rank = scoring.add_trend_rank(rank, w, ts, 1800)
        ranks.append(rank)
    assert max(ranks) - min(ranks) < 1e-9
    # The same key as the decay-to-now score of the old agent, for events in time order.
    score, updated = 0.0, 0
    for w, ts in sorted(events, key=lambda e: e[1]):
        score, updated = scoring.add_trend(score, updated, w, ts, 1800)
    assert ranks[0] == pytest.approx(scoring.trend_rank(score, updated, 1800), abs=1e-6)


def test_trend_rank_stays_finite_far_from_the_epoch_and_ignores_zero_weights() -> None:
    rank = scoring.add_trend_rank(None, 2.0, 10**13, 60)  # ~300 years ahead, 1 min half-life
    assert math.isfinite(rank)
    assert scoring.add_trend_rank(rank, 0.0, 10**13, 60) == rank
    assert scoring.add_trend_rank(None, 0.0, 0, 60) is None


def test_neighbour_shares_do_not_depend_on_order_or_rebasing() -> None:
    rng = random.Random(2)
    pairs = [
        (f"v{rng.randrange(30)}", rng.random(), 1_700_000_000_000 + rng.randrange(48 * HOUR_MS))
        for _ in range(400)
    ]
    results = []
    for half_life in (6 * 3600, 600):  # 600 s over 48 h forces rebasing (2^288)
        for _ in range(2):
            rng.shuffle(pairs)
            nbrs: dict[str, float] = {}
            base = None
            for dst, w, ts in pairs:
                base = scoring.add_pair(nbrs, base, dst, w, ts, half_life, top_k=100)
            shares = dict(scoring.normalised_top(nbrs, 100))
            at = scoring.neighbour_weights_at(nbrs, base, 1_700_000_000_000 + 48 * HOUR_MS, half_life)
            results.append((half_life, shares, at))
    for (hl_a, shares_a, at_a), (hl_b, shares_b, at_b) in zip(results, results[1:], strict=False):
        if hl_a != hl_b:
            continue
        assert shares_a.keys() == shares_b.keys()
        for k in shares_a:
            assert shares_a[k] == pytest.approx(shares_b[k], rel=1e-9)
            assert at_a[k] == pytest.approx(at_b[k], rel=1e-9)
    assert sum(results[0][1].values()) == pytest.approx(1.0)


def test_neighbours_are_pruned_to_k_when_they_reach_2k() -> None:
    nbrs: dict[str, float] = {}
    base = None
    for i in range(7):  # k = 3: the 6th distinct neighbour prunes to the best 3
        base = scoring.add_pair(nbrs, base, f"d{i}", float(i + 1), 1000, 3600, top_k=3)
        assert len(nbrs) == (i + 1 if i < 5 else 3 + (i - 5))
    assert set(nbrs) == {"d3", "d4", "d5", "d6"}


def test_engagement_counts_windows_and_dedup() -> None:
    state = new_engagement()
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % (3600 * 1000)  # an hour boundary
    events = [
        ("view", t0 + 5_000, 9_500, 10_000),  # a completion
        ("view", t0 + 70_000, 1_000, 10_000),  # a fast skip, next minute
        ("like", t0 + 70_500, None, None),
        ("view", t0 + 20 * 60_000, 4_000, 10_000),  # the second 15-min pane
    ]
    for offset, (type_, ts, watch, duration) in enumerate(events):
        facts = Facts(type_, "v", ts, watch, duration)
        assert not is_applied(state["a"], 3, offset)
        apply_engagement(state, facts, 3, offset, P)
        assert is_applied(state["a"], 3, offset)
        if offset == 2:  # before the 20th minute opens a window that drops these
            assert state["s"][str(t0 // 1000)]["views"] == 1
            assert state["s"][str(t0 // 1000 + 60)] == {
                "views": 1,
                "watch_time_ms": 1000,
                "wr1": 1,
                "skips": 1,
                "likes": 1,
            }
    assert list(state["s"]) == [str(t0 // 1000 + 1200)]
    assert state["c"]["views"] == 3 and state["c"]["completions"] == 1 and state["c"]["skips"] == 1
    assert state["c"]["likes"] == 1 and state["c"]["watch_time_ms"] == 14_500
    doc = stats_document("v", state, P)
    # The widest hourly window holding the newest event starts 45 min before its pane: all four events.
    assert doc["window_long"]["views"] == 3 and doc["window_long"]["likes"] == 1
    assert doc["window_long"]["end_ms"] - doc["window_long"]["start_ms"] == HOUR_MS
    assert doc["window_short"]["views"] == 1 and doc["window_short"]["start_ms"] == t0 + 20 * 60_000
    assert doc["views"] == 3 and doc["completion_rate"] == round(1 / 3, 4)


def test_old_windows_are_dropped_when_a_new_one_opens() -> None:
    state = new_engagement()
    for i in range(10):
        apply_engagement(state, Facts("view", "v", i * 60_000, 5000, 10_000), 0, i, P)
    assert len(state["s"]) == 5  # the newest and the 4 before it (4 min)
    assert state["c"]["views"] == 10


def test_pairs_record_their_offsets() -> None:
    state = new_neighbours()
    apply_pair(state, "b", 1.0, 1000, 2, 41, P)
    assert (
        is_applied(state["a"], 2, 41)
        and not is_applied(state["a"], 2, 42)
        and not is_applied(state["a"], 1, 0)
    )


def test_covisit_entries_go_both_ways_with_a_distinct_position_each() -> None:
    from recstream.streamstate import POSITIONS_PER_OFFSET, StreamParams, covisit_entries, new_history

    state = new_history()
    one_way, both = StreamParams(covisit_both_ways=False), StreamParams()
    for offset, video in enumerate(["a", "b"]):
        covisit_entries(state, video, 1000 + offset, 1.0, offset, both)
    again = {"h": [list(e) for e in state["h"]], "o": state["o"]}
    entries = covisit_entries(state, "c", 1002, 1.0, 2, both)
    base = 2 * POSITIONS_PER_OFFSET
    # Newest first: b (one step back, weight 1), a (two steps, 0.8); then the same reversed, c the source.
    assert entries == [
        ("b", "c", 1.0, base),
        ("a", "c", 0.8, base + 1),
        ("c", "b", 1.0, base + 2),
        ("c", "a", 0.8, base + 3),
    ]
    assert covisit_entries(again, "c", 1002, 1.0, 2, one_way) == entries[:2]
    # Positions are what the co-visitation agent applies once each: c, a source twice in one event,
    # takes both of its entries.
    from recstream.streamstate import apply_pair, is_applied, new_neighbours

    neighbours = new_neighbours()
    for src, dst, w, position in entries:
        if src == "c" and not is_applied(neighbours["a"], 0, position):
            apply_pair(neighbours, dst, w, 1002, 0, position, both)
    assert set(neighbours["n"]) == {"a", "b"}


def test_covisit_groups_carry_the_same_pairs_at_the_same_positions() -> None:
    """What the history agent forwards (one entry per source and event) is covisit_entries grouped:
    the reversed pairs all in one entry for the new video, each pair at first + k."""
    from recstream.streamstate import POSITIONS_PER_OFFSET, covisit_entries, covisit_groups, new_history

    states = [new_history(), new_history()]
    for offset, video in enumerate(["a", "b", "x", "c"]):
        groups = covisit_groups(states[0], video, 1000 + offset, 1.0, offset, P)
        assert [
            (s, d, w, first + k)
            for s, ds, ws, first in groups
            for k, (d, w) in enumerate(zip(ds, ws, strict=True))
        ] == covisit_entries(states[1], video, 1000 + offset, 1.0, offset, P)
    base = 3 * POSITIONS_PER_OFFSET
    assert [(s, list(ds), list(ws), first) for s, ds, ws, first in groups] == [
        ("x", ["c"], [1.0], base),
        ("b", ["c"], [0.8], base + 1),
        ("a", ["c"], [0.8 * 0.8], base + 2),
        ("c", ["x", "b", "a"], [1.0, 0.8, 0.8 * 0.8], base + 3),
    ]


def test_the_history_agent_forwards_covisit_groups_as_runs_by_source() -> None:
    """add_covisit_runs (what the agent appends per event) == covisit_groups, as runs per source in log
    order, for users with repeats and skips (no pairs) in their histories."""
    from collections import defaultdict

    from recstream.streamstate import StreamParams, add_covisit_runs, covisit_groups, new_history

    log = [("u1", "a", 1.0), ("u1", "b", 1.0), ("u2", "b", 0.5), ("u1", "a", 0.0), ("u1", "c", 2.0)]
    log += [("u1", f"v{i}", 1.0 + i % 3) for i in range(14)]  # more earlier videos than the lookback
    for params in (P, StreamParams(covisit_lookback=4, covisit_both_ways=False)):
        runs: defaultdict[str, list] = defaultdict(list)
        expected: defaultdict[str, list] = defaultdict(list)
        states = {u: (new_history(), new_history()) for u in ("u1", "u2")}
        for offset, (user, video, weight) in enumerate(log * 3):
            mine, theirs = states[user]
            add_covisit_runs(runs, mine, video, 1000 + offset, weight, 3, offset, params)
            for src, dsts, ws, first in covisit_groups(theirs, video, 1000 + offset, weight, offset, params):
                expected[src].append((3, 1000 + offset, first, list(dsts), list(ws)))
            assert mine == theirs
        got = {s: [(p, t, f, list(d), list(w)) for p, t, f, d, w in r] for s, r in runs.items()}
        assert got == expected
        assert max(len(d) for r in runs.values() for _p, _t, _f, d, _w in r) == (
            params.covisit_lookback if params.covisit_both_ways else 1
        )


def test_a_group_of_pairs_is_applied_as_its_pairs_one_by_one() -> None:
    """apply_pairs == apply_pair in turn, bit for bit, through a rebase and a prune (K = 2: pruned at 4)."""
    import random

    from recstream.streamstate import StreamParams, apply_pair, apply_pairs, is_applied, new_neighbours

    params = StreamParams(neighbours_per_video=2, covisit_half_life_s=10.0)
    rng = random.Random(7)
    grouped, single = new_neighbours(), new_neighbours()
    position = 0
    for step in range(60):
        ts = 1000 + step * rng.choice([1, 500, 2_000_000])  # the largest steps force a rebase
        dsts = [rng.choice("abcdefg") for _ in range(rng.randint(1, 5))]
        weights = [rng.random() for _ in dsts]
        apply_pairs(grouped, dsts, weights, ts, 3, position, params)
        for k, (dst, w) in enumerate(zip(dsts, weights, strict=True)):
            apply_pair(single, dst, w, ts, 3, position + k, params)
        position += len(dsts)
        assert grouped == single
    assert is_applied(grouped["a"], 3, position - 1) and not is_applied(grouped["a"], 3, position)


def test_a_sources_groups_from_a_batch_apply_as_each_group_in_turn_and_skip_what_was_applied() -> None:
    """apply_runs == apply_pairs per group, bit for bit; a group at or below the applied position of its
    origin partition is skipped whole (a replay after a crash, batched differently, changes nothing)."""
    import copy
    import random

    from recstream.streamstate import StreamParams, apply_pairs, apply_runs, new_neighbours

    params = StreamParams(neighbours_per_video=2, covisit_half_life_s=10.0)
    rng = random.Random(11)
    runs, position = [], {0: 0, 1: 0}
    for step in range(80):
        p = rng.choice([0, 1])
        dsts = [rng.choice("abcdefg") for _ in range(rng.randint(1, 5))]
        runs.append(
            (
                p,
                1000 + step * rng.choice([1, 500, 2_000_000]),
                position[p],
                dsts,
                [rng.random() for _ in dsts],
            )
        )
        position[p] += len(dsts)
    one_by_one = new_neighbours()
    for p, ts, first, dsts, ws in runs:
        apply_pairs(one_by_one, dsts, ws, ts, p, first, params)
    whole = new_neighbours()
    assert apply_runs(whole, runs, params) == sum(len(r[3]) for r in runs)
    assert whole == one_by_one
    # The same groups again, cut into other batches: nothing changes.
    again = copy.deepcopy(whole)
    assert apply_runs(again, runs[:30], params) == 0 and apply_runs(again, runs[30:], params) == 0
    assert again == whole
    # Halfway through, then the whole list again (a replay from an earlier commit): the same end state.
    resumed = new_neighbours()
    apply_runs(resumed, runs[:45], params)
    assert apply_runs(resumed, runs, params) == sum(len(r[3]) for r in runs[45:])
    assert resumed == whole
    # Cut anywhere into consecutive parts applied in turn (messages one by one) == joined (the covisit
    # agent gathers a source's runs across a batch's messages): bit for bit.
    for cuts in ([1], [17, 18, 60], sorted(rng.sample(range(1, 80), 9))):
        parts = new_neighbours()
        for lo, hi in zip([0, *cuts], [*cuts, len(runs)], strict=True):
            apply_runs(parts, runs[lo:hi], params)
        assert parts == whole


def test_a_materialised_list_is_checked_as_the_best_cut_ties_either_way() -> None:
    from recstream.devtools.reference import is_best_cut

    weights = {"a": 4.0, "b": 2.0, "c": 1.0, "d": 1.0, "e": 0.5}  # total 8.5
    share = {k: w / 8.5 for k, w in weights.items()}
    best3 = {k: share[k] for k in "abc"}
    assert is_best_cut(best3, weights, 3)
    assert is_best_cut({k: share[k] for k in "abd"}, weights, 3)  # c and d tie at the cut
    assert not is_best_cut({k: share[k] for k in "abe"}, weights, 3)  # e is weaker than c and d
    assert not is_best_cut({k: share[k] for k in "ab"}, weights, 3)  # too short
    assert not is_best_cut({**best3, "a": 0.5}, weights, 3)  # a wrong share
    assert is_best_cut(share, weights, 50) and not is_best_cut(best3, weights, 50)


def test_the_dashboard_counters_are_what_event_counts_says_each_event_adds() -> None:
    from collections import defaultdict

    from recstream.records import EVENT_TYPES, Interaction
    from recstream.redis_layout import OVERVIEW_PREFIX, video_series_key
    from recstream.streamstate import add_to_counters

    rng = random.Random(5)
    got: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    want: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for _ in range(3000):
        kind = rng.choice(EVENT_TYPES)
        duration = rng.choice([None, 0, 15_000, 60_000])
        watched = rng.choice([0, 500, 1_999, 2_000, 13_500, 14_000, 70_000])
        event = Interaction(
            type=kind, user_id="u", video_id=rng.choice(["a", "b"]), ts=rng.randint(1, 40_000),
            watch_time_ms=watched if kind == "view" else rng.choice([None, watched]), duration_ms=duration,
        )  # fmt: skip
        add_to_counters(got, event, P)
        second = event.ts // 1000
        overview = want[f"{OVERVIEW_PREFIX}{second}"]
        overview[kind] += 1
        if kind == "view":
            overview["watch_time_ms"] += event.watch_time_ms or 0
            if scoring.is_completion(event, P.engagement):
                overview["completions"] += 1
        series = want[video_series_key(event.video_id, second // 10 * 10)]
        for name, value in scoring.event_counts(event, P.engagement).items():
            if name in scoring.COUNTERS:
                series[name] += value
    assert {k: dict(v) for k, v in got.items()} == {k: dict(v) for k, v in want.items()}
    assert any(v.get("skips") for v in got.values()) and any(v.get("completions") for v in got.values())


def test_apply_runs_keys_any_partition_number_as_apply_pairs_does() -> None:
    """Partitions past the precomputed keys (`str(p)` made once for 0-1023) are recorded the same way."""
    from recstream.streamstate import StreamParams, apply_pairs, apply_runs, is_applied, new_neighbours

    params = StreamParams()
    runs = [(5000, 1_000, 7, ["a", "b"], [1.0, 0.5]), (3, 2_000, 0, ["a"], [0.25])]
    whole, one_by_one = new_neighbours(), new_neighbours()
    assert apply_runs(whole, runs, params) == 3
    for p, ts, first, dsts, ws in runs:
        apply_pairs(one_by_one, dsts, ws, ts, p, first, params)
    assert whole == one_by_one and whole["a"] == {"5000": 8, "3": 0}
    assert is_applied(whole["a"], 5000, 8) and apply_runs(whole, runs, params) == 0


def test_every_video_engaged_with_stays_in_the_history_or_what_left_it() -> None:
    """What the seen filter gets (`add_covisit_runs`' return) plus the history hold every video the user
    engaged with, after every event: repeats, skips (negative weights), re-engagements of the oldest
    entry; and nothing is named while the history is not full."""
    from collections import defaultdict

    from recstream.streamstate import add_covisit_runs, left_history, new_history

    params = StreamParams(history_length=8)
    rng = random.Random(4)
    state, engaged, left = new_history(), set(), set()
    named = 0
    for offset in range(3000):
        video = f"v{min(rng.randrange(30), rng.randrange(30))}"  # popular ones repeat
        weight = rng.choice([-0.5, 0.0, 1.0, 2.0])
        full = len(state["h"]) >= params.history_length
        leaving = add_covisit_runs(defaultdict(list), state, video, offset, weight, 0, offset, params)
        assert (leaving is not None) == full
        if leaving is not None:
            named += 1
            left.add(leaving)
        engaged.add(video)
        assert engaged <= left | {e[0] for e in state["h"]}, offset
    assert named > 2000 and len(left) > params.history_length
    assert left_history([("a", 1, 1.0)], 2) is None and left_history([("a", 1, 1.0), ("b", 0, 1.0)], 2) == "b"
