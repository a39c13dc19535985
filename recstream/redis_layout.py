"""The Redis layout: every key the agents write and serving (the web role, the worker's views, the
dashboard) reads, with the format of its value. One place, so writer and reader cannot drift apart;
the client code that writes and reads them is `recstream.serving.stores`."""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache

TRENDING_KEY = "trending"  # sorted set: video_id -> decayed trending score
FRESH_KEY = "fresh"  # sorted set: video_id -> created_at (epoch ms)
VIDEO_META_KEY = "video:meta"  # hash: video_id -> JSON metadata
VIDEO_STATS_KEY = "video:stats"  # hash: video_id -> JSON lifetime + windowed stats
REMOVED_VIDEOS_KEY = "videos:removed"  # set: videos taken down (DELETE /videos/{id}); serving skips them
VIDEO_CREATOR_KEY = "video:creator"  # hash: video_id -> creator_id (the creator cap at serving)
OVERVIEW_PREFIX = "overview:"  # hash per second: event counts by type, watch time, completions
ACTIVE_USERS_PREFIX = "active:"  # HyperLogLog per minute of the users who acted
HISTORY_PROGRESS_KEY = "progress:history"
"""Hash: interactions partition -> the last offset the history agent counted into the dashboard's counters
(moved after every batch, so it also shows from outside how far each partition has been processed)."""
OVERVIEW_TTL_S = 3600
VIDEO_SERIES_STEP_S = 10  # a video's engagement over time: one hash of counters per 10 s
VIDEO_SERIES_TTL_S = 3600
SEEN_TTL_S = 30 * 24 * 3600
CHANGES_SEQ_KEY = "changes:seq"  # counter: the sequence number of each change-feed write
EPOCH_KEY = "recstream:epoch"
"""A random token the first worker to look sets: gone means Redis lost its data (`agents.rematerialise`)."""


def changes_key(kind: str) -> str:
    """Change feed of `kind` ("neighbours", "catalog"): sorted set video -> sequence number of its last
    write. Serving processes read the members past the last number they saw (`recstream.serving.state`)."""
    return f"changes:{kind}"


@lru_cache(maxsize=1 << 18)
def bloom_positions(video_id: str, bits: int, hashes: int) -> tuple[int, ...]:
    """The bits a video sets in a user's seen filter (double hashing of one blake2b digest). The
    history agent sets them, serving tests them: the same function on both sides."""
    digest = hashlib.blake2b(video_id.encode(), digest_size=16).digest()
    h1, h2 = int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big") | 1
    return tuple((h1 + i * h2) % bits for i in range(hashes))


def seen_count(seen: bytes, bits: int, hashes: int) -> int:
    """How many distinct videos a seen filter holds, estimated from its set bits (Swamidass & Baldi)."""
    ones = sum(b.bit_count() for b in seen)
    if ones >= bits:
        return -1  # full: no estimate
    return round(-(bits / hashes) * math.log1p(-ones / bits))


def neighbours_key(video_id: str) -> str:
    """A video's item-CF neighbours: JSON [[neighbour, normalised score], ...], best first."""
    return f"nbrs:{video_id}"


def video_series_key(video_id: str, start_s: int) -> str:
    """Hash of a video's counters in the VIDEO_SERIES_STEP_S bucket starting at `start_s` (epoch s)."""
    return f"vseries:{video_id}:{start_s}"


def history_key(user_id: str) -> str:
    """JSON list of a user's recent engagements [video, ts, weight], newest first."""
    return f"hist:{user_id}"


def overexposed_key(user_id: str) -> str:
    """Videos not to show the user again: shown `max_unengaged_impressions` times, never engaged."""
    return f"shown:{user_id}"


def seen_key(user_id: str) -> str:
    """Bloom filter (a bit string) of every video the user engaged with: serving never recommends
    these again. No false negatives; false positives (a video wrongly taken as seen) at the rate
    `Settings.seen_bloom_bits` documents. The exact recent part is the history itself."""
    return f"seenbf:{user_id}"
