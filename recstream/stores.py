"""All Redis (hot cache) and MongoDB (durable store) client code, behind one small interface."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from recstream.settings import Settings

# Redis keys. Everything serving reads across partitions lives here.
TRENDING_KEY = "trending"  # sorted set: video_id -> decayed trending score
FRESH_KEY = "fresh"  # sorted set: video_id -> created_at (epoch ms)
VIDEO_META_KEY = "video:meta"  # hash: video_id -> JSON metadata
VIDEO_STATS_KEY = "video:stats"  # hash: video_id -> JSON lifetime + windowed stats
VIDEO_CREATOR_KEY = "video:creator"  # hash: video_id -> creator_id (the creator cap at serving)
OVERVIEW_PREFIX = "overview:"  # hash per second: event counts by type, watch time, completions
ACTIVE_USERS_PREFIX = "active:"  # HyperLogLog per minute of the users who acted
OVERVIEW_TTL_S = 3600
VIDEO_SERIES_STEP_S = 10  # a video's engagement over time: one hash of counters per 10 s
VIDEO_SERIES_TTL_S = 3600
SEEN_TTL_S = 30 * 24 * 3600


def neighbours_key(video_id: str) -> str:
    """Sorted set of a video's item-CF neighbours (neighbour -> normalised score)."""
    return f"nbrs:{video_id}"


def video_series_key(video_id: str, start_s: int) -> str:
    """Hash of a video's counters in the VIDEO_SERIES_STEP_S bucket starting at `start_s` (epoch s)."""
    return f"vseries:{video_id}:{start_s}"


def history_key(user_id: str) -> str:
    """JSON list of a user's recent engagements [video, ts, weight], newest first."""
    return f"hist:{user_id}"


def seen_key(user_id: str) -> str:
    """Set of every video the user engaged with (serving never recommends these again)."""
    return f"seen:{user_id}"


class Stores:
    """Async Redis and MongoDB clients with the operations recstream needs.

    One instance per process; `close()` it on shutdown (web `cleanup_ctx`, Faust service stop).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: aioredis.Redis = aioredis.from_url(settings.redis_url, decode_responses=True)
        self.mongo_client: AsyncMongoClient = AsyncMongoClient(
            settings.mongo_url, serverSelectionTimeoutMS=5000, tz_aware=True
        )
        self.db: AsyncDatabase = self.mongo_client[settings.mongo_db]

    async def close(self) -> None:
        await self.redis.aclose()
        await self.mongo_client.close()

    async def ensure_indexes(self) -> None:
        await self.db.videos.create_index("creator_id")
        await self.db.videos.create_index("created_at")
        await self.db.video_stats.create_index([("views", -1)])
        await self.db.models.create_index([("created_at", -1)])

    # --- health -------------------------------------------------------------------------
    async def health(self) -> dict[str, str]:
        out: dict[str, str] = {}
        try:
            await self.redis.ping()
            out["redis"] = "ok"
        except Exception as exc:
            out["redis"] = f"error: {exc}"
        try:
            await self.db.command("ping")
            out["mongo"] = "ok"
        except Exception as exc:
            out["mongo"] = f"error: {exc}"
        return out

    # --- MongoDB: durable documents -----------------------------------------------------
    async def upsert_many(self, collection: str, docs: Mapping[str, Mapping[str, Any]]) -> int:
        """Replace-or-insert documents by `_id` in one bulk write; returns how many were written."""
        if not docs:
            return 0
        ops = [UpdateOne({"_id": key}, {"$set": dict(doc)}, upsert=True) for key, doc in docs.items()]
        await self.db[collection].bulk_write(ops, ordered=False)
        return len(ops)

    async def increment_many(self, collection: str, increments: Mapping[str, Mapping[str, float]]) -> None:
        """`$inc` counters per `_id`, creating documents as needed, in one bulk write."""
        if increments:
            ops = [UpdateOne({"_id": k}, {"$inc": dict(v)}, upsert=True) for k, v in increments.items()]
            await self.db[collection].bulk_write(ops, ordered=False)

    async def find(
        self,
        collection: str,
        filter_: Mapping[str, Any] | None = None,
        *,
        sort: list[tuple[str, int]] | None = None,
        limit: int = 0,
    ) -> list[dict[str, Any]]:
        cursor = self.db[collection].find(dict(filter_ or {}))
        if sort:
            cursor = cursor.sort(sort)
        if limit:
            cursor = cursor.limit(limit)
        return await cursor.to_list(None)

    async def aggregate(self, collection: str, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        cursor = await self.db[collection].aggregate(pipeline)
        return await cursor.to_list(None)

    # --- Redis: the hot cache serving reads ---------------------------------------------
    async def set_json_fields(self, key: str, mapping: Mapping[str, Any]) -> None:
        if mapping:
            await self.redis.hset(key, mapping={k: json.dumps(v) for k, v in mapping.items()})

    async def get_json_fields(self, key: str, fields: Iterable[str]) -> dict[str, Any]:
        fields = list(fields)
        if not fields:
            return {}
        values = await self.redis.hmget(key, fields)
        return {f: json.loads(v) for f, v in zip(fields, values, strict=True) if v is not None}

    # --- Redis: writes by the agents, one pipeline per batch -------------------------------
    async def write_user_state(self, histories: Mapping[str, list], seen: Mapping[str, set[str]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for user, history in histories.items():
            pipe.set(history_key(user), json.dumps(history))
        for user, videos in seen.items():
            pipe.sadd(seen_key(user), *videos)
            pipe.expire(seen_key(user), SEEN_TTL_S)
        await pipe.execute()

    async def write_overview(self, per_second: Mapping[int, Mapping[str, float]],
                             users_per_minute: Mapping[int, set[str]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for second, counts in per_second.items():
            key = f"{OVERVIEW_PREFIX}{second}"
            for field_, value in counts.items():
                pipe.hincrbyfloat(key, field_, value)
            pipe.expire(key, OVERVIEW_TTL_S)
        for minute, users in users_per_minute.items():
            key = f"{ACTIVE_USERS_PREFIX}{minute}"
            pipe.pfadd(key, *users)
            pipe.expire(key, OVERVIEW_TTL_S)
        await pipe.execute()

    async def write_video_stats(self, stats: Mapping[str, Mapping[str, Any]],
                                trend_ranks: Mapping[str, float],
                                series: Mapping[str, Mapping[int, Mapping[str, float]]] | None = None) -> None:
        """Per-video documents, trending ranks, and counter increments per video per series bucket."""
        pipe = self.redis.pipeline(transaction=False)
        if stats:
            pipe.hset(VIDEO_STATS_KEY, mapping={v: json.dumps(doc) for v, doc in stats.items()})
        if trend_ranks:
            pipe.zadd(TRENDING_KEY, dict(trend_ranks))
        for video, buckets in (series or {}).items():
            for start, counts in buckets.items():
                key = video_series_key(video, start)
                for field_, value in counts.items():
                    pipe.hincrbyfloat(key, field_, value)
                pipe.expire(key, VIDEO_SERIES_TTL_S)
        await pipe.execute()

    async def write_neighbours(self, neighbours: Mapping[str, Mapping[str, float]]) -> None:
        """Replace each video's neighbour sorted set (atomically per video: MULTI/EXEC)."""
        pipe = self.redis.pipeline(transaction=True)
        for video, scores in neighbours.items():
            pipe.delete(neighbours_key(video))
            if scores:
                pipe.zadd(neighbours_key(video), dict(scores))
        await pipe.execute()

    async def write_catalog(self, videos: Mapping[str, Mapping[str, Any]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(VIDEO_META_KEY, mapping={v: json.dumps(doc) for v, doc in videos.items()})
        pipe.hset(VIDEO_CREATOR_KEY, mapping={v: doc["creator_id"] for v, doc in videos.items()})
        pipe.zadd(FRESH_KEY, {v: doc["created_at"] for v, doc in videos.items()})
        await pipe.execute()

    # --- Redis: reads by the serving views ------------------------------------------------
    async def user_state(self, user_id: str) -> tuple[list, set[str]]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(history_key(user_id))
        pipe.smembers(seen_key(user_id))
        raw, seen = await pipe.execute()
        return (json.loads(raw) if raw else []), set(seen)

    async def neighbours_of(self, videos: list[str], per_video: int) -> dict[str, dict[str, float]]:
        if not videos:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for v in videos:
            pipe.zrevrange(neighbours_key(v), 0, per_video - 1, withscores=True)
        results = await pipe.execute()
        return {v: dict(r) for v, r in zip(videos, results, strict=True)}

    async def top_trending(self, k: int) -> list[tuple[str, float]]:
        return await self.redis.zrevrange(TRENDING_KEY, 0, k - 1, withscores=True)

    async def fresh_videos(self, since_ms: int, k: int) -> list[tuple[str, float]]:
        return await self.redis.zrevrangebyscore(FRESH_KEY, "+inf", since_ms, start=0, num=k, withscores=True)

    async def creators_of(self, videos: list[str]) -> dict[str, str]:
        if not videos:
            return {}
        values = await self.redis.hmget(VIDEO_CREATOR_KEY, videos)
        return {v: c for v, c in zip(videos, values, strict=True) if c is not None}

    async def random_videos(self, n: int) -> list[str]:
        """Up to n distinct catalog videos at random."""
        return await self.redis.hrandfield(VIDEO_CREATOR_KEY, n) or []

    async def video_stats(self, videos: list[str]) -> dict[str, Any]:
        return await self.get_json_fields(VIDEO_STATS_KEY, videos)

    async def video_meta(self, videos: list[str]) -> dict[str, Any]:
        return await self.get_json_fields(VIDEO_META_KEY, videos)

    async def overview(self, since_s: int, until_s: int) -> tuple[dict[int, dict[str, float]], dict[int, int]]:
        """Per-second counters and per-minute active users between two epoch seconds."""
        seconds = list(range(since_s, until_s + 1))
        minutes = sorted({s // 60 for s in seconds})
        pipe = self.redis.pipeline(transaction=False)
        for s in seconds:
            pipe.hgetall(f"{OVERVIEW_PREFIX}{s}")
        for m in minutes:
            pipe.pfcount(f"{ACTIVE_USERS_PREFIX}{m}")
        results = await pipe.execute()
        per_second = {s: {k: float(v) for k, v in r.items()} for s, r in zip(seconds, results, strict=False) if r}
        active = dict(zip(minutes, results[len(seconds):], strict=True))
        return per_second, active

    # --- dashboard reads ---
    VIDEO_SERIES_STEP_S = VIDEO_SERIES_STEP_S

    async def active_users(self, since_s: int, until_s: int) -> int:
        """Distinct users who acted in the minutes covering two epoch seconds (one HyperLogLog union)."""
        keys = [f"{ACTIVE_USERS_PREFIX}{m}" for m in range(since_s // 60, until_s // 60 + 1)]
        return int(await self.redis.pfcount(*keys)) if keys else 0

    async def video_series(self, video_id: str, since_s: int, until_s: int) -> dict[int, dict[str, float]]:
        """A video's counters per `VIDEO_SERIES_STEP_S` bucket between two epoch seconds (empty until
        the engagement agent writes `vseries:` keys)."""
        step = self.VIDEO_SERIES_STEP_S
        buckets = list(range(since_s // step * step, until_s + 1, step))
        pipe = self.redis.pipeline(transaction=False)
        for b in buckets:
            pipe.hgetall(video_series_key(video_id, b))
        results = await pipe.execute()
        return {b: {k: float(v) for k, v in r.items()} for b, r in zip(buckets, results, strict=True) if r}

    async def model_versions(self, namespace: str, limit: int) -> list[dict[str, Any]]:
        """The model registry's documents of a namespace, newest first (written by recstream.model_store)."""
        from recstream.model_store import MODELS

        return await self.find(MODELS, {"namespace": namespace}, sort=[("created_at", -1)], limit=limit)
