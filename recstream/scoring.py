"""Pure functions behind the streaming state and the serving blend (no I/O: unit-tested directly).

The agents, the serving views and the offline evaluation all call these, so what is measured offline is
what runs online.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from recstream.records import Interaction

# Confidence each action adds on top of how much of the video was watched. A share or a follow is a
# stronger statement than a like; a fast skip says "not this" (negative feedback).
ACTION_WEIGHTS: Mapping[str, float] = {"like": 1.0, "share": 1.5, "comment": 1.0, "follow": 1.5, "skip": -0.5}


@dataclass(frozen=True)
class EngagementParams:
    completion_ratio: float = 0.9
    fast_skip_ms: int = 2000


def watch_ratio(watch_time_ms: int | None, duration_ms: int | None) -> float | None:
    """watch time / duration, capped at 3 (replays); None when the duration is unknown or zero."""
    if watch_time_ms is None or not duration_ms:
        return None
    return min(watch_time_ms / duration_ms, 3.0)


def is_completion(event: Interaction, params: EngagementParams) -> bool:
    """A view is complete when watch time >= completion_ratio * duration (duration known and > 0)."""
    ratio = watch_ratio(event.watch_time_ms, event.duration_ms)
    return event.type == "view" and ratio is not None and ratio >= params.completion_ratio


def is_fast_skip(event: Interaction, params: EngagementParams) -> bool:
    if event.type == "skip":
        return True
    return event.type == "view" and (event.watch_time_ms or 0) < params.fast_skip_ms


def engagement_weight(event: Interaction, params: EngagementParams) -> float:
    """How much this action says the user wants this video: > 0 positive, < 0 negative, 0 neutral."""
    if event.type != "view":
        return ACTION_WEIGHTS[event.type]
    if is_fast_skip(event, params):
        return ACTION_WEIGHTS["skip"]
    ratio = watch_ratio(event.watch_time_ms, event.duration_ms)
    if ratio is None:  # unknown duration: credit watch time, saturating at a minute
        return min((event.watch_time_ms or 0) / 60_000, 1.0)
    return min(ratio, 2.0)


WATCH_BUCKETS = 10
"""Watch-ratio histogram: tenths of the video (wr0 = under 10 %), the last bucket 100 % and more."""


def watch_bucket(event: Interaction) -> int | None:
    """The histogram bucket of a view, or None when its duration is unknown or zero."""
    ratio = watch_ratio(event.watch_time_ms, event.duration_ms)
    return None if ratio is None else min(int(ratio * WATCH_BUCKETS), WATCH_BUCKETS)


ACTION_COUNTERS = {"like": "likes", "share": "shares", "comment": "comments", "follow": "follows"}
"""The counter each action other than a view or a skip adds one to."""
COUNTERS = ("views", "watch_time_ms", "completions", "likes", "shares", "comments", "skips", "follows")


def event_counts(event: Interaction, params: EngagementParams) -> dict[str, float]:
    """What one event adds to a video's engagement counters.

    A view counts as a view (and its watch time) whatever its length; a completion is a view with
    watch_time >= completion_ratio * duration; a skip is an explicit skip or a view shorter than
    fast_skip_ms (so a fast-skipped view counts as both a view and a skip).
    """
    c: dict[str, float] = {}
    if event.type == "view":
        c["views"] = 1
        c["watch_time_ms"] = event.watch_time_ms or 0
        if is_completion(event, params):
            c["completions"] = 1
        bucket = watch_bucket(event)
        if bucket is not None:
            c[f"wr{bucket}"] = 1
    if is_fast_skip(event, params):
        c["skips"] = 1
    if event.type in ACTION_COUNTERS:
        c[ACTION_COUNTERS[event.type]] = 1
    return c


def add_counts(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """Counter addition for plain dicts (the JSON values of Faust tables)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def stats_view(counts: Mapping[str, float]) -> dict[str, float]:
    """Counters plus the derived rates the API shows."""
    views = counts.get("views", 0)
    out = {k: counts.get(k, 0) for k in COUNTERS}
    out["avg_watch_time_ms"] = round(counts.get("watch_time_ms", 0) / views, 1) if views else 0.0
    out["completion_rate"] = round(counts.get("completions", 0) / views, 4) if views else 0.0
    out["watch_ratio_hist"] = [int(counts.get(f"wr{i}", 0)) for i in range(WATCH_BUCKETS + 1)]
    return out


# --- user history --------------------------------------------------------------------------------
# An entry is (video_id, ts_ms, weight), a JSON array when stored. A tuple in memory, not a list: a
# worker keeps tens of thousands of histories of up to 50 entries decoded, and a tuple of a string and
# two numbers is one the garbage collector stops tracking, where two million lists made every older-
# generation collection walk them (pauses of 0.1-0.3 s that held up every user's next event).
HistoryEntry = tuple


def history_entries(entries: Sequence[Sequence]) -> list[HistoryEntry]:
    """A stored history (JSON arrays) as entries."""
    return [tuple(e) for e in entries]


def update_history(
    history: Sequence[HistoryEntry], video_id: str, ts: int, weight: float, max_len: int
) -> list[HistoryEntry]:
    """Newest first, one entry per video (a re-engagement moves it to the front and adds up), bounded."""
    total = weight
    rest = []
    for e in history:  # one pass: this runs for every event
        if e[0] == video_id:
            total += e[2]
        else:
            rest.append(e)
    return [(video_id, ts, round(total, 4)), *rest[: max_len - 1]]


def covisit_pairs(
    history_before: Sequence[HistoryEntry], video_id: str, weight: float, lookback: int, recency: float
) -> list[tuple[str, str, float]]:
    """Directional pairs (earlier video -> this video), weighted recency**steps_back * engagement.

    Only positive engagements pair: a skip says nothing about what goes with what. Earlier videos the
    user skipped are not sources either.
    """
    if weight <= 0:
        return []
    pairs = []
    w = weight  # weight * recency**step, by multiplication: this runs for every event
    for src, _ts, src_weight in history_before:
        if src == video_id or src_weight <= 0:
            continue
        pairs.append((src, video_id, w))
        if len(pairs) >= lookback:
            break
        w *= recency
    return pairs


# --- time decay ----------------------------------------------------------------------------------
def decay(value: float, from_ms: int, to_ms: int, half_life_s: float) -> float:
    if to_ms <= from_ms:
        return value
    return value * 0.5 ** ((to_ms - from_ms) / 1000 / half_life_s)


def merge_neighbours(
    neighbours: Mapping[str, Sequence[float]],
    pairs: Iterable[tuple[str, float]],
    now_ms: int,
    half_life_s: float,
    top_k: int,
) -> dict[str, list[float]]:
    """Add pair weights to a video's neighbour map {dst: [weight, updated_ms]}, decayed to now; keep top K."""
    merged = {dst: [decay(w, int(t), now_ms, half_life_s), now_ms] for dst, (w, t) in neighbours.items()}
    for dst, w in pairs:
        merged.setdefault(dst, [0.0, now_ms])[0] += w
    best = sorted(merged.items(), key=lambda kv: kv[1][0], reverse=True)[:top_k]
    return {dst: [round(w, 6), t] for dst, (w, t) in best if w > 1e-6}


def normalise_neighbours(neighbours: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Row-normalise so a popular source video does not drown out the rest of a user's history."""
    total = sum(w for w, _t in neighbours.values())
    if total <= 0:
        return {}
    return {dst: w / total for dst, (w, _t) in neighbours.items()}


# --- trending ------------------------------------------------------------------------------------
def trending_weight(event: Interaction, params: EngagementParams) -> float:
    """Trending counts engagement, not raw views: completions and shares weigh more than a glance."""
    if event.type == "view":
        if is_fast_skip(event, params):
            return 0.0
        return 1.0 + (1.0 if is_completion(event, params) else 0.0)
    return max(ACTION_WEIGHTS.get(event.type, 0.0), 0.0) * 2


def add_trend(
    score: float, updated_ms: int, weight: float, now_ms: int, half_life_s: float
) -> tuple[float, int]:
    """Gravity-decayed trending score: decay the old score to now, add this event."""
    return decay(score, updated_ms, now_ms, half_life_s) + weight, max(now_ms, updated_ms)


def trend_rank(score: float, updated_ms: int, half_life_s: float) -> float:
    """A time-independent key: log2(score) + t/half_life orders videos as their decayed scores would at
    any common instant, so Redis can keep one sorted set without rewriting every score as time passes."""
    return math.log2(max(score, 1e-12)) + updated_ms / 1000 / half_life_s


def trend_score_now(rank: float, now_ms: int, half_life_s: float) -> float:
    """The decayed score at `now_ms`, recovered from `trend_rank`."""
    return exp2(rank - now_ms / 1000 / half_life_s)


MAX_EXPONENT = 1000.0


def exp2(x: float) -> float:
    """2^x, saturating at 2^1000 (~1e301) instead of raising OverflowError: a rank from an event dated
    far ahead (written before times were bounded) must not turn every read of trending into a 500."""
    return 2.0 ** min(x, MAX_EXPONENT)


# --- serving -------------------------------------------------------------------------------------
def itemcf_scores(
    recent: Sequence[HistoryEntry],
    neighbours_of: Mapping[str, Mapping[str, float]],
    recency: float,
    max_sources: int = 10,
) -> dict[str, tuple[float, str]]:
    """Score candidates from the neighbours of the user's recent positive videos, weighted recency**m.

    Returns {video: (score, the recent video that contributed most)}.
    """
    scores: dict[str, float] = {}
    best_source: dict[str, tuple[float, str]] = {}
    step = 0
    for video_id, _ts, weight in recent:
        if weight <= 0:
            continue
        factor = recency**step
        for dst, s in neighbours_of.get(video_id, {}).items():
            contribution = factor * s
            scores[dst] = scores.get(dst, 0.0) + contribution
            if contribution > best_source.get(dst, (-1.0, ""))[0]:  # a 0 (underflowed) share still names one
                best_source[dst] = (contribution, video_id)
        step += 1
        if step >= max_sources:
            break
    return {v: (s, best_source[v][1]) for v, s in scores.items()}


@dataclass
class Candidate:
    video_id: str
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)


def _scaled(scores: Mapping[str, float]) -> dict[str, float]:
    """Scale a source's scores to [0, 1] by its maximum, so blend weights compare like with like."""
    top = max(scores.values(), default=0.0)
    return {k: v / top for k, v in scores.items()} if top > 0 else {}


def blend(
    sources: Sequence[tuple[float, Mapping[str, float], Mapping[str, str] | str]],
) -> dict[str, Candidate]:
    """Weighted sum of max-scaled sources. Each source is (weight, {video: score}, reason or {video: reason})."""
    out: dict[str, Candidate] = {}
    for weight, scores, reason in sources:
        if weight <= 0:
            continue
        for video_id, s in _scaled(scores).items():
            c = out.setdefault(video_id, Candidate(video_id))
            c.score += weight * s
            r = reason if isinstance(reason, str) else reason.get(video_id)
            if r and r not in c.reasons:
                c.reasons.append(r)
    return out


def select(
    candidates: Iterable[Candidate],
    k: int,
    seen: set[str],
    creator_of: Mapping[str, str],
    max_per_creator: int,
) -> list[Candidate]:
    """Best first, never a seen video, at most `max_per_creator` per creator (unknown creators uncapped)."""
    picked: list[Candidate] = []
    per_creator: dict[str, int] = {}
    for c in sorted(candidates, key=lambda c: (-c.score, c.video_id)):
        if c.video_id in seen:
            continue
        creator = creator_of.get(c.video_id)
        if creator is not None:
            if per_creator.get(creator, 0) >= max_per_creator:
                continue
            per_creator[creator] = per_creator.get(creator, 0) + 1
        picked.append(c)
        if len(picked) >= k:
            break
    return picked


# --- order-independent streaming state -----------------------------------------------------------
# The agents' state must come out the same whatever the batch boundaries and however the events of
# different partitions interleave (a replay after a crash cuts batches differently). Sums are: so the
# trending score and the co-visitation weights are kept forward-decayed (each event's weight scaled
# by 2^(t/half_life) once, at arrival) instead of decayed-to-now at every update.
NEG_INF = float("-inf")


def log2_add(a: float, b: float) -> float:
    """log2(2^a + 2^b) without overflow: the sum of two forward-decayed scores kept as logarithms."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    hi, lo = (a, b) if a >= b else (b, a)
    return hi + math.log2(1.0 + 2.0 ** (lo - hi))


def add_trend_rank(rank: float | None, weight: float, ts_ms: int, half_life_s: float) -> float | None:
    """Add one event to a video's trending rank: log2(sum of w * 2^(t / half_life)).

    The same key `trend_rank` gives (time-independent, so Redis keeps one sorted set), but a sum, so
    the order events arrive in does not matter. Events of weight <= 0 (fast skips) do not trend.
    """
    if weight <= 0:
        return rank
    term = math.log2(weight) + ts_ms / 1000 / half_life_s
    return term if rank is None else log2_add(rank, term)


REBASE_EXPONENT = 64.0
"""Forward-decayed neighbour weights are stored relative to a base time; past 2^64 they are rebased."""


def add_pair(
    neighbours: dict[str, float],
    base_s: float | None,
    dst: str,
    weight: float,
    ts_ms: int,
    half_life_s: float,
    top_k: int,
) -> float:
    """Add one co-visitation (src -> dst, weight at time ts) to a source video's neighbour map.

    `neighbours` maps dst -> weight * 2^((t - base_s) / half_life), summed: one new pair touches one
    entry, not the whole list. Returns the (possibly new) base. The list is pruned to the best `top_k`
    only when it reaches 2 * top_k entries, on the pair that makes it so, so pruning depends on the
    order of pairs but never on where batches start and end.
    """
    return add_pairs(neighbours, base_s, (dst,), (weight,), ts_ms, half_life_s, top_k)


def add_pairs(
    neighbours: dict[str, float],
    base_s: float | None,
    dsts: Sequence[str],
    weights: Sequence[float],
    ts_ms: int,
    half_life_s: float,
    top_k: int,
) -> float:
    """`add_pair` for several destinations at one time, in order: the same result, with the decay
    factor computed once."""
    base, _added = add_runs(neighbours, base_s, ((0, ts_ms, 0, dsts, weights),), half_life_s, top_k)
    return base  # type: ignore[return-value]  # never None: one group was added


def add_runs(
    neighbours: dict[str, float],
    base_s: float | None,
    runs: Iterable[tuple[int, int, int, Sequence[str], Sequence[float]]],
    half_life_s: float,
    top_k: int,
    applied: dict[str, int] | None = None,
) -> tuple[float | None, int]:
    """`add_pairs` for each group `(origin partition, ts_ms, first position, destinations, weights)` in
    turn; returns the (possibly new) base and the pairs added. With `applied` (origin partition, as
    text -> the last position added), a group at or below it is skipped whole and the others move it.

    One call for all of a source's groups in a batch, skipping and adding as it goes: it runs for every
    pair the pipeline sees (ten per event, 1.7 per group), and filtering the groups into a list first,
    then walking that, took 7-9 % longer (4.6-5.1 s against 4.3-4.6 s for half of the replay workload's
    co-visitation messages, the two applied in turn, message by message)."""
    prune_at = 2 * top_k
    get = neighbours.get
    keys = _PARTITION_KEYS
    last_ts, factor = None, 1.0
    added = 0
    for p, ts_ms, first, dsts, weights in runs:
        n = len(dsts)
        if applied is not None:
            key = keys.get(p) or _partition_key(p)
            if first <= applied.get(key, -1):
                continue
            applied[key] = first + n - 1
        added += n
        if ts_ms != last_ts:  # runs of one time share their factor (a rebase gives that time 1.0)
            t = ts_ms / 1000
            if base_s is None:
                base_s = t
            exponent = (t - base_s) / half_life_s
            if exponent > REBASE_EXPONENT:  # keep the stored numbers finite: rebase everything to t
                scale = 2.0**-exponent
                for dst in neighbours:
                    neighbours[dst] *= scale
                base_s, exponent = t, 0.0
            factor = 2.0**exponent
            last_ts = ts_ms
        pairs = ((dsts[0], weights[0]),) if n == 1 == len(weights) else zip(dsts, weights, strict=True)
        for dst, weight in pairs:
            old = get(dst)
            if old is not None:
                neighbours[dst] = old + weight * factor
                continue
            neighbours[dst] = 0.0 + weight * factor  # as old + ... would be, bit for bit
            if len(neighbours) >= prune_at:  # only a new key can reach it
                keep = best_neighbours(neighbours, top_k)
                neighbours.clear()
                neighbours.update(keep)
    return base_s, added


_PARTITION_KEYS: dict[int, str] = {}
"""Origin partition -> its key among a neighbour state's applied positions (JSON object keys are text):
made once, not per group."""


def _partition_key(p: int) -> str:
    key = _PARTITION_KEYS[p] = str(p)
    return key


def best_neighbours(neighbours: Mapping[str, float], top_k: int) -> list[tuple[str, float]]:
    """The `top_k` heaviest, heaviest first; a tie at the cut is broken by name, so which ones are kept
    never depends on the map's order. Sorted by weight alone (4x faster than a (-weight, name) key, and
    pruning runs often on popular videos), by both only when a tie straddles the cut."""
    items = sorted(neighbours.items(), key=itemgetter(1), reverse=True)
    if len(items) > top_k and items[top_k - 1][1] == items[top_k][1]:
        items.sort(key=lambda kv: (-kv[1], kv[0]))
    return items[:top_k]


def neighbour_weights_at(
    neighbours: Mapping[str, float], base_s: float, at_ms: int, half_life_s: float
) -> dict[str, float]:
    """The decayed weights of a forward-decayed neighbour map at one instant."""
    scale = exp2((base_s - at_ms / 1000) / half_life_s)
    return {dst: w * scale for dst, w in neighbours.items()}


def normalised_top(neighbours: Mapping[str, float], limit: int) -> list[list]:
    """Row-normalised [[dst, share], ...] of the best `limit`: what serving reads. Sorted best first only
    when the list must be cut (readers sort what they cut themselves); this runs for every source video
    touched. The decay factor is common to every entry of a list, so shares need no decaying."""
    total = sum(neighbours.values())
    if total <= 0:
        return []
    items = neighbours.items()
    if len(neighbours) > limit:
        items = sorted(items, key=itemgetter(1), reverse=True)[:limit]  # type: ignore[assignment]
    return [[dst, w / total] for dst, w in items]


# --- per-video engagement windows ----------------------------------------------------------------
def window_start(ts_ms: int, size_s: int) -> int:
    """Start (epoch s) of the tumbling window of `size_s` seconds that holds `ts_ms`."""
    return ts_ms // 1000 // size_s * size_s


def prune_windows(windows: dict[str, dict[str, float]], newest_start_s: int, keep_s: int) -> None:
    """Drop windows that start more than `keep_s` before the newest one (in place)."""
    for key in [k for k in windows if int(k) < newest_start_s - keep_s]:
        del windows[key]


def sum_windows(windows: Mapping[str, Mapping[str, float]], start_s: int, end_s: int) -> dict[str, float]:
    """Counters summed over the windows starting in [start_s, end_s): a long window from its panes."""
    out: dict[str, float] = {}
    for key, counts in windows.items():
        if start_s <= int(key) < end_s:
            out = add_counts(out, counts)
    return out
