"""The streaming state computed from scratch: the same pure functions the agents apply, run over a list
of events in partition order, without Kafka, tables or batches. The exactness tests and the benchmark
compare what a live (crashed, restarted, rebalanced) pipeline materialised with this.

`compare_redis()` lists every difference between what Redis holds and what the events imply: user
histories, per-video lifetime counters and windows (exact), trending ranks and neighbour lists (floats,
1e-9 relative), the per-second overview and per-video timeline counters (exact).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from recstream import scoring
from recstream.records import Interaction
from recstream.redis_layout import VIDEO_STATS_KEY, bloom_positions, history_key, neighbours_key, seen_key
from recstream.streamstate import (
    Facts,
    StreamParams,
    add_to_counters,
    apply_engagement,
    apply_pair,
    covisit_entries,
    new_engagement,
    new_history,
    new_neighbours,
    stats_document,
)

REL = 1e-9


@dataclass
class Reference:
    histories: dict[str, dict[str, Any]] = field(default_factory=dict)
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    neighbours: dict[str, dict[str, Any]] = field(default_factory=dict)
    counters: dict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    engaged: dict[str, set[str]] = field(default_factory=dict)
    """Every video each user engaged with: serving's seen set (history + seen filter) must hold them."""


def compute(events: Iterable[tuple[int, int, Interaction]], params: StreamParams) -> Reference:
    """`events` as (partition, offset, interaction), each partition's in offset order."""
    ref = Reference()
    for p, offset, e in events:
        state = ref.histories.setdefault(e.user_id, new_history())
        ref.engaged.setdefault(e.user_id, set()).add(e.video_id)
        weight = scoring.engagement_weight(e, params.engagement)
        for src, dst, w, position in covisit_entries(state, e.video_id, e.ts, weight, offset, params):
            apply_pair(ref.neighbours.setdefault(src, new_neighbours()), dst, w, e.ts, p, position, params)
        apply_engagement(
            ref.videos.setdefault(e.video_id, new_engagement()),
            Facts(e.type, e.video_id, e.ts, e.watch_time_ms, e.duration_ms),
            p,
            offset,
            params,
        )
        add_to_counters(ref.counters, e, params)
    return ref


def _close(a: float | None, b: float | None, rel: float = REL) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def is_best_cut(got: dict[str, float], neighbours: dict[str, float], limit: int) -> bool:
    """Whether `got` (a materialised neighbour list as a dict) is the best `limit` of a source's
    neighbours as `scoring.normalised_top` cuts them: the right number of entries, each with its share,
    and nothing left out that beats the weakest one kept. Entries tied with it may fall either way
    (their order is the order pairs arrived in, which a reference computed partition by partition does
    not reproduce)."""
    shares = dict(scoring.normalised_top(neighbours, 10**9))
    if len(got) != min(limit, len(shares)) or not all(k in shares and _close(got[k], shares[k]) for k in got):
        return False
    weakest = min(got.values(), default=0.0)
    return all(share <= weakest or _close(share, weakest) for k, share in shares.items() if k not in got)


def compare_redis(
    client: Any,
    ref: Reference,
    params: StreamParams,
    limit: int = 20,
    counters: bool = True,
    seen_bloom: tuple[int, int] | None = None,
) -> list[str]:
    """Differences between a (sync, decode_responses=False) redis client's data and the reference
    (`counters=False`: not the dashboard's per-second counters, which no table holds). With
    `seen_bloom` (bits, hashes): also every video a user engaged with is in their history or filter."""
    diffs: list[str] = []
    users = sorted(ref.histories)
    for user, raw in zip(users, client.mget([history_key(u) for u in users]), strict=True):
        got = scoring.history_entries(orjson.loads(raw)) if raw else None
        if got != ref.histories[user]["h"]:
            diffs.append(f"history of {user}: {got} != {ref.histories[user]['h']}")
    if seen_bloom is not None:
        diffs += _unseen(client, ref, *seen_bloom)
    videos = sorted(ref.videos)
    raw_stats = client.hmget(VIDEO_STATS_KEY, videos) if videos else []
    for video, raw in zip(videos, raw_stats, strict=True):
        want = stats_document(video, ref.videos[video], params)
        got = orjson.loads(raw) if raw else {}
        rank_want, rank_got = want.pop("trend_rank"), got.pop("trend_rank", None)
        if got != want:
            diffs.append(f"stats of {video}: {got} != {want}")
        if not _close(rank_got, rank_want):
            diffs.append(f"trend rank of {video}: {rank_got} != {rank_want}")
        zrank = client.zscore("trending", video)
        if rank_want is not None and not _close(zrank, rank_want):
            diffs.append(f"trending zset of {video}: {zrank} != {rank_want}")
    sources = sorted(ref.neighbours)
    for src, raw in zip(
        sources, client.mget([neighbours_key(s) for s in sources]) if sources else [], strict=True
    ):
        got = dict(orjson.loads(raw)) if raw else {}
        if not is_best_cut(got, ref.neighbours[src]["n"], params.neighbours_materialised):
            want = scoring.normalised_top(ref.neighbours[src]["n"], params.neighbours_materialised)
            diffs.append(f"neighbours of {src}: {got} != best {params.neighbours_materialised} of {want}")
    for key, fields in ref.counters.items() if counters else ():
        got = {k.decode(): float(v) for k, v in client.hgetall(key).items()}
        if got != {k: float(v) for k, v in fields.items()}:
            diffs.append(f"{key}: {got} != {dict(fields)}")
    return diffs[:limit] if limit else diffs


def _unseen(client: Any, ref: Reference, bits: int, hashes: int) -> list[str]:
    """Videos a user engaged with that serving would not take as seen: in neither the reference's
    history (compared above) nor the seen filter."""
    diffs = []
    users = sorted(ref.engaged)
    for i in range(0, len(users), 1000):
        chunk = users[i : i + 1000]
        for user, raw in zip(chunk, client.mget([seen_key(u) for u in chunk]), strict=True):
            in_history = {e[0] for e in ref.histories[user]["h"]}
            seen = raw or b""
            for video in sorted(ref.engaged[user] - in_history):
                if not all(
                    b // 8 < len(seen) and seen[b // 8] >> (7 - b % 8) & 1
                    for b in bloom_positions(video, bits, hashes)
                ):
                    diffs.append(f"seen filter of {user}: {video} (engaged, out of the history) missing")
    return diffs


def compare_mongo(db: Any, ref: Reference, params: StreamParams, limit: int = 20) -> list[str]:
    """Differences between a (sync pymongo) database's video_stats / user_profiles and the reference."""
    diffs: list[str] = []
    stats = {d["_id"]: d for d in db.video_stats.find({"_id": {"$in": sorted(ref.videos)}})}
    for video, state in ref.videos.items():
        want = stats_document(video, state, params)
        got = dict(stats.get(video, {}))
        got.pop("_id", None)
        if not _close(got.pop("trend_rank", None), want.pop("trend_rank")) or got != want:
            diffs.append(f"mongo video_stats {video}: {got} != {want}")
    profiles = {d["_id"]: d for d in db.user_profiles.find({"_id": {"$in": sorted(ref.histories)}})}
    for user, state in ref.histories.items():
        got = profiles.get(user, {}).get("history")
        if got is not None:
            got = scoring.history_entries(got)
        if got != state["h"]:
            diffs.append(f"mongo user_profiles {user}: {got} != {state['h']}")
    return diffs[:limit] if limit else diffs
