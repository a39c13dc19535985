import math

import pytest

from recstream import scoring
from recstream.records import Interaction

P = scoring.EngagementParams(completion_ratio=0.9, fast_skip_ms=2000)


def view(watch: int, duration: int | None = 10_000, video: str = "v") -> Interaction:
    return Interaction(
        type="view", user_id="u", video_id=video, watch_time_ms=watch, duration_ms=duration, ts=1
    )


def test_completion_and_fast_skip() -> None:
    assert scoring.is_completion(view(9_000), P)
    assert not scoring.is_completion(view(8_999), P)
    assert scoring.is_completion(view(25_000), P)  # replays count
    assert not scoring.is_completion(view(5_000, duration=0), P)  # unknown duration: never complete
    assert not scoring.is_completion(view(5_000, duration=None), P)
    assert scoring.is_fast_skip(view(1_999), P) and not scoring.is_fast_skip(view(2_000), P)


def test_engagement_weight() -> None:
    assert scoring.engagement_weight(view(5_000), P) == 0.5
    assert scoring.engagement_weight(view(40_000), P) == 2.0  # replays capped
    assert scoring.engagement_weight(view(500), P) < 0  # fast skip is negative
    assert scoring.engagement_weight(view(30_000, duration=None), P) == 0.5  # by watch time
    like = Interaction(type="like", user_id="u", video_id="v", ts=1)
    assert scoring.engagement_weight(like, P) == scoring.ACTION_WEIGHTS["like"]


def test_event_counts_and_stats_view() -> None:
    total: dict[str, float] = {}
    for e in (
        view(10_000),
        view(9_500),
        view(1_000),
        Interaction(type="like", user_id="u", video_id="v", ts=1),
    ):
        total = scoring.add_counts(total, scoring.event_counts(e, P))
    assert total == {
        "views": 3,
        "watch_time_ms": 20_500,
        "completions": 2,
        "skips": 1,
        "likes": 1,
        "wr10": 1,
        "wr9": 1,
        "wr1": 1,
    }
    s = scoring.stats_view(total)
    assert s["watch_ratio_hist"] == [0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    assert s["completion_rate"] == round(2 / 3, 4) and s["avg_watch_time_ms"] == round(20_500 / 3, 1)
    assert scoring.stats_view({})["completion_rate"] == 0.0


def test_update_history_is_newest_first_bounded_and_merges() -> None:
    h: list = []
    for i, v in enumerate(["a", "b", "c", "b"]):
        h = scoring.update_history(h, v, ts=i, weight=1.0, max_len=3)
    assert [e[0] for e in h] == ["b", "c", "a"]
    assert h[0][2] == 2.0 and h[0][1] == 3
    h = scoring.update_history(h, "d", ts=4, weight=1.0, max_len=3)
    assert [e[0] for e in h] == ["d", "b", "c"]


def test_covisit_pairs_are_directional_and_recency_weighted() -> None:
    history = [["c", 3, 1.0], ["skipped", 2, -0.5], ["b", 1, 1.0], ["a", 0, 1.0]]
    pairs = scoring.covisit_pairs(history, "x", weight=2.0, lookback=2, recency=0.5)
    assert pairs == [("c", "x", 2.0), ("b", "x", 1.0)]  # skip ignored, lookback respected
    assert scoring.covisit_pairs(history, "x", weight=-0.5, lookback=2, recency=0.5) == []
    assert scoring.covisit_pairs([["x", 1, 1.0]], "x", 1.0, 5, 0.5) == []


def test_decay_and_neighbour_merge() -> None:
    hour = 3600_000
    assert scoring.decay(8.0, 0, 2 * hour, half_life_s=3600) == pytest.approx(2.0)
    merged = scoring.merge_neighbours(
        {"old": [4.0, 0]}, [("new", 1.5), ("old", 0.0)], now_ms=hour, half_life_s=3600, top_k=10
    )
    assert merged["old"][0] == pytest.approx(2.0) and merged["new"][0] == pytest.approx(1.5)
    top1 = scoring.merge_neighbours(merged, [("new", 1.0)], now_ms=hour, half_life_s=3600, top_k=1)
    assert list(top1) == ["new"]
    norm = scoring.normalise_neighbours({"a": [3.0, 0], "b": [1.0, 0]})
    assert norm == {"a": 0.75, "b": 0.25}


def test_trend_rank_orders_like_decayed_scores() -> None:
    hl = 1800
    old = scoring.add_trend(0.0, 0, 10.0, now_ms=0, half_life_s=hl)  # 10 an hour ago
    new = scoring.add_trend(0.0, 0, 3.0, now_ms=3600_000, half_life_s=hl)  # 3 now
    # At t = 1 h the old score has decayed to 2.5 < 3.
    assert scoring.trend_rank(*new, hl) > scoring.trend_rank(*old, hl)
    now = 3600_000
    assert scoring.trend_score_now(scoring.trend_rank(*old, hl), now, hl) == pytest.approx(2.5)
    s, t = scoring.add_trend(*old, 1.0, now_ms=now, half_life_s=hl)
    assert (s, t) == (pytest.approx(3.5), now)
    assert math.isfinite(scoring.trend_rank(0.0, 0, hl))


def test_itemcf_scores_weight_recent_sources_more() -> None:
    recent = [["b", 2, 1.0], ["a", 1, 1.0]]
    nbrs = {"a": {"x": 1.0, "y": 0.5}, "b": {"y": 1.0}}
    scores = scoring.itemcf_scores(recent, nbrs, recency=0.5)
    assert scores["y"] == (pytest.approx(1.0 + 0.25), "b")
    assert scores["x"] == (pytest.approx(0.5), "a")


def test_blend_scales_sources_and_keeps_reasons() -> None:
    out = scoring.blend(
        [
            (1.0, {"a": 10.0, "b": 5.0}, {"a": "because you watched z", "b": "because you watched z"}),
            (0.5, {"b": 100.0, "c": 50.0}, "trending"),
            (0.0, {"d": 1.0}, "ignored"),
        ]
    )
    assert out["a"].score == pytest.approx(1.0) and out["b"].score == pytest.approx(1.0)
    assert out["b"].reasons == ["because you watched z", "trending"]
    assert out["c"].score == pytest.approx(0.25) and "d" not in out


def test_select_drops_seen_and_caps_creators() -> None:
    cands = [scoring.Candidate(v, s) for v, s in [("a", 5), ("b", 4), ("c", 3), ("d", 2), ("e", 1)]]
    creators = {"a": "x", "b": "x", "c": "x", "d": "y"}
    picked = scoring.select(cands, k=10, seen={"b"}, creator_of=creators, max_per_creator=1)
    assert [c.video_id for c in picked] == ["a", "d", "e"]
    assert len(scoring.select(cands, k=2, seen=set(), creator_of={}, max_per_creator=1)) == 2


def test_strategy_buckets_are_stable_and_balanced() -> None:
    from collections import Counter

    from recstream.serving.recommend import strategy_for

    strategies = ["random", "trending", "itemcf", "als", "hybrid"]
    assert strategy_for("user-42", strategies) == strategy_for("user-42", list(strategies))
    counts = Counter(strategy_for(f"u{i}", strategies) for i in range(5000))
    assert set(counts) == set(strategies) and min(counts.values()) > 850
    assert strategy_for("anyone", ["hybrid"]) == "hybrid"


def test_trending_arithmetic_saturates_instead_of_overflowing() -> None:
    # A rank written by an event dated weeks ahead (before times were bounded) must not raise.
    rank = scoring.add_trend_rank(None, 2.0, 10**13, 1800)
    score = scoring.trend_score_now(rank, 1_700_000_000_000, 1800)
    assert math.isfinite(score) and score == 2.0**scoring.MAX_EXPONENT
    assert scoring.trend_score_now(
        scoring.add_trend_rank(None, 2.0, 1_000, 1800), 1_000, 1800
    ) == pytest.approx(2.0)
    assert math.isfinite(sum(scoring.neighbour_weights_at({"a": 1.0}, 10**10, 0, 60).values()))


def test_an_event_from_the_far_past_does_not_move_current_trending() -> None:
    # Replays may carry any past time: forward decay weighs it 2^-(age / half-life), so a year-old
    # burst of shares cannot outrank one view made now.
    now, half_life = 1_700_000_000_000, 1800
    old = None
    for _ in range(10_000):
        old = scoring.add_trend_rank(old, 6.0, now - 365 * 86_400_000, half_life)
    fresh = scoring.add_trend_rank(None, 1.0, now, half_life)
    assert (
        scoring.trend_score_now(old, now, half_life) < 1e-100 < scoring.trend_score_now(fresh, now, half_life)
    )


def test_best_neighbours_are_the_heaviest_with_ties_at_the_cut_broken_by_name() -> None:
    import random

    from recstream.scoring import best_neighbours

    rng = random.Random(11)
    for trial in range(200):
        # few distinct weights: ties straddle the cut often
        weights = [rng.choice([0.5, 1.0, 1.5, 2.0]) if trial % 2 else rng.random() for _ in range(40)]
        names = [f"v{rng.randrange(1000)}" for _ in range(40)]
        neighbours = dict(zip(names, weights, strict=True))
        shuffled = list(neighbours.items())
        rng.shuffle(shuffled)
        want = sorted(neighbours.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        for got in (best_neighbours(neighbours, 10), best_neighbours(dict(shuffled), 10)):
            assert set(got) == set(want)  # the same ones, whatever the map's order
            assert [w for _n, w in got] == [w for _n, w in want]  # heaviest first
    assert best_neighbours({"a": 1.0}, 5) == [("a", 1.0)]
