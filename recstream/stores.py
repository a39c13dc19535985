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
VIDEO_STATS_KEY = "video:stats"  # hash: video_id -> JSON lifetime stats


def neighbours_key(video_id: str) -> str:
    """Sorted set of a video's item-CF neighbours (neighbour -> normalised score)."""
    return f"nbrs:{video_id}"


def history_key(user_id: str) -> str:
    """List of a user's recent video ids, newest first (what serving must never recommend again)."""
    return f"hist:{user_id}"


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
