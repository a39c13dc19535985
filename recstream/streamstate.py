"""The streaming state as pure functions: what one event does to one key's value.

The agents apply these per batch through the table cache; `recstream.devtools.reference` applies them to a
plain list of events, which is the "computed from scratch" the exactness tests and the benchmark
compare the live system with. Values are plain JSON (dict keys are strings).

Every value records the source offsets it has applied, per source partition (`a`, or `o` for the
user history, whose source is one partition). An event at or below them is skipped: that makes a
replay after a crash, or a message forwarded twice, change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from recstream import scoring
from recstream.redis_layout import OVERVIEW_PREFIX, VIDEO_SERIES_STEP_S, video_series_key
from recstream.settings import Settings


@dataclass(frozen=True)
class StreamParams:
    history_length: int = 50
    covisit_lookback: int = 10
    covisit_recency: float = 0.8
    neighbours_per_video: int = 100
    covisit_half_life_s: float = 6 * 3600
    short_window_s: int = 60
    long_window_s: int = 3600
    long_window_step_s: int = 900
    trending_half_life_s: float = 1800
    engagement: scoring.EngagementParams = scoring.EngagementParams()
    covisit_both_ways: bool = True
    neighbours_materialised: int = 50

    @classmethod
    def from_settings(cls, s: Settings) -> StreamParams:
        return cls(
            s.history_length,
            s.covisit_lookback,
            s.covisit_recency,
            s.neighbours_per_video,
            s.covisit_half_life_s,
            s.short_window_s,
            s.long_window_s,
            s.long_window_step_s,
            s.trending_half_life_s,
            scoring.EngagementParams(s.completion_ratio, s.fast_skip_ms),
            s.covisit_both_ways,
            s.serving_neighbours_per_video,
        )


class Facts(NamedTuple):
    """What the per-video state needs of an interaction (the scoring functions read these fields)."""

    type: str
    video_id: str
    ts: int
    watch_time_ms: int | None
    duration_ms: int | None


def is_applied(applied: dict[str, int], partition: int, offset: int) -> bool:
    return offset <= applied.get(str(partition), -1)


# --- user history (keyed by user; source: the interactions partition) -----------------------------
def new_history() -> dict[str, Any]:
    return {"h": [], "o": -1}


def decode_history(stored: dict[str, Any]) -> dict[str, Any]:
    """A user history as stored (entries as JSON arrays) with its entries as `scoring.HistoryEntry`."""
    return {**stored, "h": scoring.history_entries(stored["h"])}


def apply_to_history(
    state: dict[str, Any], video_id: str, ts: int, weight: float, offset: int, params: StreamParams
) -> list[tuple[str, str, float]]:
    """Add one engagement to a user's history; returns the co-visitation pairs it makes."""
    pairs = scoring.covisit_pairs(
        state["h"], video_id, weight, params.covisit_lookback, params.covisit_recency
    )
    state["h"] = scoring.update_history(state["h"], video_id, ts, weight, params.history_length)
    state["o"] = offset
    return pairs


POSITIONS_PER_OFFSET = 1024
"""Co-visitation entries are applied once each by their position in the log: origin offset x 1024 + the
entry's index among its event's entries. With pairs both ways one event gives a source video several
entries (the new video is the source of every reversed pair), so the offset alone could not tell
them apart; positions keep `is_applied` exact. 1024 > 2 x the largest `covisit_lookback` (500)."""


def covisit_groups(
    state: dict[str, Any], video_id: str, ts: int, weight: float, offset: int, params: StreamParams
) -> list[tuple[str, Sequence[str], Sequence[float], int]]:
    """Add one engagement to a user's history; returns the co-visitation pairs it makes, grouped by
    source as the history agent forwards them: (source, destinations, weights, first position). The
    directional pairs (earlier -> this video) are a group of one each (their sources differ); with
    `covisit_both_ways` the reversed ones (this video -> each earlier) are one group, so the agent
    reads and writes this video's neighbours once for all of them. Pair k of a group is at position
    first + k."""
    pairs = apply_to_history(state, video_id, ts, weight, offset, params)
    base = offset * POSITIONS_PER_OFFSET
    groups = [(src, (dst,), (w,), base + k) for k, (src, dst, w) in enumerate(pairs)]  # tuples: cheaper
    if params.covisit_both_ways and pairs:
        groups.append(
            (video_id, [src for src, _dst, _w in pairs], [w for _src, _dst, w in pairs], base + len(pairs))
        )
    return groups


def add_covisit_runs(
    by_source: dict[str, list[tuple]],
    state: dict[str, Any],
    video_id: str,
    ts: int,
    weight: float,
    partition: int,
    offset: int,
    params: StreamParams,
) -> str | None:
    """`covisit_groups` as the history agent forwards them, appended straight to `by_source` (a
    defaultdict(list): source -> runs in log order), each run `(origin partition, ts, first position,
    destinations, weights)`: the same pairs (`scoring.covisit_pairs`, written out) and the same history
    update, without building them twice (this runs for every event; tests/unit/test_streamstate.py
    holds the two equal).

    Returns the video that may have left the history (its oldest entry when it was full; None when
    nothing could leave): the user's seen filter must hold it from now on (`left_history`)."""
    history = state["h"]
    state["h"] = scoring.update_history(history, video_id, ts, weight, params.history_length)
    state["o"] = offset
    leaving = left_history(history, params.history_length)
    if weight <= 0:
        return leaving
    base = offset * POSITIONS_PER_OFFSET
    lookback, recency = params.covisit_lookback, params.covisit_recency
    dst = (video_id,)
    sources: list[str] = []
    weights: list[float] = []
    w = weight
    for src, _ts, src_weight in history:
        if src == video_id or src_weight <= 0:
            continue
        by_source[src].append((partition, ts, base + len(sources), dst, (w,)))
        sources.append(src)
        weights.append(w)
        if len(sources) >= lookback:
            break
        w *= recency
    if sources and params.covisit_both_ways:
        by_source[video_id].append((partition, ts, base + len(sources), sources, weights))
    return leaving


def left_history(history_before: Sequence[Any], history_length: int) -> str | None:
    """The video an event may push out of a user's history: the oldest entry of a full one. (When the
    event re-engages a video already there nothing leaves; naming the oldest anyway only sets bits for a
    video the user did engage with, which a seen filter may always hold.)

    Serving takes a user's seen videos as the history (exact, the newest `history_length`) plus the
    seen filter, so the filter needs only what left the history: most events add nothing to it, and
    the Redis work per event (7 bits) went with them (92 % of the benchmark's events)."""
    if len(history_before) >= history_length:
        return history_before[-1][0]
    return None


def covisit_entries(
    state: dict[str, Any], video_id: str, ts: int, weight: float, offset: int, params: StreamParams
) -> list[tuple[str, str, float, int]]:
    """`covisit_groups` one pair at a time: (source, destination, weight, position), the directional
    pairs (earlier -> this video) and, with `covisit_both_ways`, each reversed (this video -> earlier)."""
    return [
        (src, dst, w, first + k)
        for src, dsts, weights, first in covisit_groups(state, video_id, ts, weight, offset, params)
        for k, (dst, w) in enumerate(zip(dsts, weights, strict=True))
    ]


# --- the dashboard's counters (Redis hashes, added to exactly once per event) ---------------------
def add_to_counters(counters: dict[str, dict[str, float]], event: Any, params: StreamParams) -> None:
    """What one interaction adds to the per-second overview and the per-video 10 s timeline, keyed by
    their Redis hash names; `counters` is a defaultdict of defaultdict(float). The timeline gets the
    `scoring.COUNTERS` of `scoring.event_counts`, written out here because this runs for every event
    (tests/unit/test_streamstate.py holds the two equal)."""
    second = event.ts // 1000
    kind = event.type
    bucket = counters[f"{OVERVIEW_PREFIX}{second}"]
    series = counters[video_series_key(event.video_id, second // VIDEO_SERIES_STEP_S * VIDEO_SERIES_STEP_S)]
    bucket[kind] += 1
    if kind == "view":
        watched = event.watch_time_ms or 0
        bucket["watch_time_ms"] += watched
        series["views"] += 1
        series["watch_time_ms"] += watched
        if scoring.is_completion(event, params.engagement):
            bucket["completions"] += 1
            series["completions"] += 1
        if watched < params.engagement.fast_skip_ms:
            series["skips"] += 1
    elif kind == "skip":
        series["skips"] += 1
    else:
        series[scoring.ACTION_COUNTERS[kind]] += 1


def new_engagement() -> dict[str, Any]:
    # c: lifetime counters, r: trend rank, d: duration, l: newest event ms, s: short windows,
    # w: long-window panes, a: applied offsets per origin (interactions) partition
    return {"c": {}, "r": None, "d": None, "l": 0, "s": {}, "w": {}, "a": {}}


def apply_engagement(
    state: dict[str, Any], facts: Facts, partition: int, offset: int, params: StreamParams
) -> None:
    delta = scoring.event_counts(facts, params.engagement)  # type: ignore[arg-type]
    _add_into(state["c"], delta)
    weight = scoring.trending_weight(facts, params.engagement)  # type: ignore[arg-type]
    if weight > 0:
        state["r"] = scoring.add_trend_rank(state["r"], weight, facts.ts, params.trending_half_life_s)
    if facts.duration_ms:
        state["d"] = facts.duration_ms
    if facts.ts > state["l"]:
        state["l"] = facts.ts
    for windows, size, keep in (
        (state["s"], params.short_window_s, 4 * params.short_window_s),
        (state["w"], params.long_window_step_s, 2 * params.long_window_s),
    ):
        key = str(facts.ts // 1000 // size * size)
        window = windows.get(key)
        if window is None:  # windows are only ever dropped when one opens: bounded, and cheap per event
            windows[key] = dict(delta)
            scoring.prune_windows(windows, scoring.window_start(state["l"], size), keep)
        else:
            _add_into(window, delta)
    state["a"][str(partition)] = offset


def _add_into(counts: dict[str, float], delta: dict[str, float]) -> None:
    """Counter addition in place (the table value is ours until it is flushed)."""
    for k, v in delta.items():
        counts[k] = counts.get(k, 0) + v


def stats_document(video: str, state: dict[str, Any], params: StreamParams) -> dict[str, Any]:
    """The per-video figures serving shows: lifetime, the short window and the widest long window that
    hold the newest event (the long one added up from its panes)."""
    last = state["l"]
    out = {
        "video_id": video,
        **scoring.stats_view(state["c"]),
        "duration_ms": state["d"],
        "last_event_ms": last,
        "trend_rank": state["r"],
    }
    short = scoring.window_start(last, params.short_window_s)
    out["window_short"] = {
        "start_ms": short * 1000,
        "end_ms": (short + params.short_window_s) * 1000,
        **scoring.stats_view(state["s"].get(str(short), {})),
    }
    long_start = (
        scoring.window_start(last, params.long_window_step_s)
        - params.long_window_s
        + params.long_window_step_s
    )
    long_counts = scoring.sum_windows(state["w"], long_start, long_start + params.long_window_s)
    out["window_long"] = {
        "start_ms": long_start * 1000,
        "end_ms": (long_start + params.long_window_s) * 1000,
        **scoring.stats_view(long_counts),
    }
    return out


# --- co-visitation neighbours (keyed by source video) ------------------------------------------------
def new_neighbours() -> dict[str, Any]:
    # n: dst -> forward-decayed weight, b: their base time (s), a: applied offsets per origin partition
    return {"n": {}, "b": None, "a": {}}


def apply_pair(
    state: dict[str, Any], dst: str, weight: float, ts: int, partition: int, offset: int, params: StreamParams
) -> None:
    apply_pairs(state, [dst], [weight], ts, partition, offset, params)


def apply_pairs(
    state: dict[str, Any],
    dsts: Sequence[str],
    weights: Sequence[float],
    ts: int,
    partition: int,
    first: int,
    params: StreamParams,
) -> None:
    """A group of pairs from one source at one time (positions first, first + 1, ...), as applying
    each in turn would."""
    state["b"] = scoring.add_pairs(
        state["n"], state["b"], dsts, weights, ts, params.covisit_half_life_s, params.neighbours_per_video
    )
    state["a"][str(partition)] = first + len(dsts) - 1


def apply_runs(state: dict[str, Any], runs: Sequence[Sequence[Any]], params: StreamParams) -> int:
    """One source's groups from one history batch (`covisit_groups`' output for this source, in log
    order), each `(origin partition, ts, first position, destinations, weights)`: a group already
    applied is skipped whole, the others applied as `apply_pairs` would, bit for bit. Returns the pairs
    applied."""
    state["b"], added = scoring.add_runs(
        state["n"], state["b"], runs, params.covisit_half_life_s, params.neighbours_per_video, state["a"]
    )
    return added


# --- impressions ---------------------------------------------------------------------------------
def count_shown(shown: dict[str, int], videos: list[str], keep: int) -> None:
    """Count one answer's videos in a user's {video: times shown}, most recently shown last; only the
    `keep` most recently shown are kept (in place)."""
    for video in dict.fromkeys(videos):  # a video listed twice in one answer was shown once
        shown[video] = shown.pop(video, 0) + 1
    for video in list(shown)[: max(0, len(shown) - keep)]:
        del shown[video]


def overexposed(shown: dict[str, int], limit: int) -> list[str]:
    """The videos shown at least `limit` times (none when limit is 0: the rule is off)."""
    return [v for v, n in shown.items() if n >= limit] if limit > 0 else []
