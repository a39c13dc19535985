"""All Redis (hot cache) and MongoDB (durable store) client code, behind one small interface."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any

import orjson
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient, DeleteOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from recstream.redis_layout import (
    ACTIVE_USERS_PREFIX,
    CHANGES_SEQ_KEY,
    FRESH_KEY,
    OVERVIEW_PREFIX,
    OVERVIEW_TTL_S,
    REMOVED_VIDEOS_KEY,
    SEEN_TTL_S,
    TRENDING_KEY,
    VIDEO_CREATOR_KEY,
    VIDEO_META_KEY,
    VIDEO_SERIES_STEP_S,
    VIDEO_STATS_KEY,
    bloom_positions,
    changes_key,
    history_key,
    neighbours_key,
    overexposed_key,
    seen_key,
    video_series_key,
)
from recstream.serving.resp import PipelinedRedis
from recstream.settings import Settings


def uncounted(
    counted: Iterable[tuple[int, int, Any]], seen: Mapping[int, int]
) -> tuple[list[Any], dict[int, int]]:
    """Of a batch's (partition, offset, event), the events the Redis counters do not hold yet, each once,
    and the newest offset per partition among them (what `Stores.add_counters` moves the progress to).

    `seen` is the progress Redis holds: partition -> the last offset counted. A batch may hold an
    offset twice: after a rebalance the consumer can start fetching before Faust's recovery seeks back
    to the committed offset, in the same generation, so what it had delivered is delivered again
    (`agents.common.take_batches` keeps both: the tables skip the copy by their applied offsets). The
    counters are increments: a copy counted again is an over-count. So each (partition, offset) counts
    once, whatever its order in the batch."""
    events: list[Any] = []
    newest: dict[int, int] = {}
    taken: set[tuple[int, int]] = set()
    for p, offset, event in counted:
        if offset <= seen.get(p, -1) or (p, offset) in taken:
            continue
        taken.add((p, offset))
        events.append(event)
        newest[p] = max(newest.get(p, -1), offset)
    return events, newest


# Adds counters and moves the per-partition offsets they cover in one atomic step, and only if those
# offsets are still what the caller read: counting is exactly once however often a batch is retried.
# KEYS[1] progress hash; ARGV[1] JSON {expect: {p: offset}, set: {p: offset}, incr: [[key, {field:
# n}]], hll: [[key, [member, ...]]]}; ARGV[2] TTL of the counter keys. Returns 1, or 0 if it changed.
ADD_COUNTERS_LUA = """
local d = cjson.decode(ARGV[1])
local ttl = tonumber(ARGV[2])
for p, v in pairs(d['expect']) do
  if tonumber(redis.call('HGET', KEYS[1], p) or '-1') ~= v then return 0 end
end
for _, item in ipairs(d['incr']) do
  for f, v in pairs(item[2]) do redis.call('HINCRBYFLOAT', item[1], f, v) end
  redis.call('EXPIRE', item[1], ttl)
end
for _, item in ipairs(d['hll']) do
  redis.call('PFADD', item[1], unpack(item[2]))
  redis.call('EXPIRE', item[1], ttl)
end
for p, v in pairs(d['set']) do redis.call('HSET', KEYS[1], p, string.format('%d', v)) end
return 1
"""

# Sets the bits of each user's new videos in their seen filter and renews its TTL: one command for a
# whole batch. ARGV[1] JSON {seen key: [[bit, ...] per video, ...]}, ARGV[2] TTL. One BITFIELD per
# user sets all of its bits (`SET u1 bit 1` addresses bits as SETBIT does): a call out of Lua costs
# ~2 us in Redis, and a SETBIT per bit made this script ~half of Redis's CPU during a replay (6 million
# calls per million events). Setting a bit twice is harmless, and so is a replay: it sets the same bits.
ADD_SEEN_LUA = """
local d = cjson.decode(ARGV[1])
local ttl = tonumber(ARGV[2])
for key, videos in pairs(d) do
  local args = {}
  local n = 0
  for _, bits in ipairs(videos) do
    for _, b in ipairs(bits) do
      args[n + 1] = 'SET'; args[n + 2] = 'u1'; args[n + 3] = b; args[n + 4] = 1
      n = n + 4
      if n >= 4000 then redis.call('BITFIELD', key, unpack(args, 1, n)); n = 0 end
    end
  end
  if n > 0 then redis.call('BITFIELD', key, unpack(args, 1, n)) end
  redis.call('EXPIRE', key, ttl)
end
return 1
"""

# Records members of a change feed under one new sequence number. KEYS[1] the counter, KEYS[2] the
# feed; ARGV the members. Run in the same MULTI as the writes it announces.
RECORD_CHANGES_LUA = """
local seq = redis.call('INCR', KEYS[1])
for i = 1, #ARGV, 500 do
  local args = {}
  for j = i, math.min(i + 499, #ARGV) do
    args[#args + 1] = seq
    args[#args + 1] = ARGV[j]
  end
  redis.call('ZADD', KEYS[2], unpack(args))
end
return seq
"""


MONGO_SLICE = 500
"""Documents per bulk write. pymongo builds and encodes a whole bulk write between two turns of the event
loop: 8,000 user profiles at once held a worker's loop ~100 ms (every user's next event waited)."""


class Stores:
    """Async Redis and MongoDB clients with the operations recstream needs.

    One instance per process; `close()` it on shutdown (web `cleanup_ctx`, Faust service stop).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: aioredis.Redis = aioredis.from_url(settings.redis_url, decode_responses=True)
        # The serving path's one read per request, pipelined on one connection (recstream.serving.resp).
        self.user_reads = PipelinedRedis(settings.redis_url)
        self.mongo_client: AsyncMongoClient = AsyncMongoClient(
            settings.mongo_url, serverSelectionTimeoutMS=5000, tz_aware=True
        )
        self.db: AsyncDatabase = self.mongo_client[settings.mongo_db]
        self._add_counters = self.redis.register_script(ADD_COUNTERS_LUA)
        self._add_seen = self.redis.register_script(ADD_SEEN_LUA)
        self._record_changes = self.redis.register_script(RECORD_CHANGES_LUA)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.user_reads.aclose()
        await self.mongo_client.close()

    async def ensure_indexes(self) -> None:
        """The indexes of the queries the dashboard and the model registry make (`_id` is always one)."""
        await self.db.videos.create_index("creator_id")
        await self.db.videos.create_index("created_at")
        await self.db.video_stats.create_index([("views", -1)])
        await self.db.models.create_index([("namespace", 1), ("created_at", -1)])  # as model_store's own
        await self.db.user_profiles.create_index([("updated_ms", -1)])
        await self.db.closed_loop.create_index([("created_at", -1)])  # the dashboard's newest runs

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
    async def ping_mongo(self) -> None:
        """Returns once the server answers (raises after server selection's 5 s if it does not)."""
        await self.db.command("ping")

    async def upsert_many(self, collection: str, docs: Mapping[str, Mapping[str, Any]]) -> int:
        """Replace-or-insert documents by `_id`, in bulk writes of at most MONGO_SLICE; returns how many
        were written. Every document is written again when it raises (upserts: idempotent)."""
        items = list(docs.items())
        for i in range(0, len(items), MONGO_SLICE):
            ops = [
                DeleteOne({"_id": key})
                if doc is None
                else UpdateOne({"_id": key}, {"$set": dict(doc)}, upsert=True)
                for key, doc in items[i : i + MONGO_SLICE]
            ]  # None: the document is erased
            await self.db[collection].bulk_write(ops, ordered=False)
        return len(items)

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
            await self.redis.hset(key, mapping={k: orjson.dumps(v) for k, v in mapping.items()})

    async def get_json_fields(self, key: str, fields: Iterable[str]) -> dict[str, Any]:
        fields = list(fields)
        if not fields:
            return {}
        values = await self.redis.hmget(key, fields)
        return {f: orjson.loads(v) for f, v in zip(fields, values, strict=True) if v is not None}

    # --- Redis: writes by the agents, one pipeline per batch -------------------------------
    async def write_user_state(
        self, histories: Mapping[str, list], left_history: Mapping[str, set[str]]
    ) -> None:
        """Absolute histories, and the videos that left them added to each seen filter: both idempotent.

        The filter first: serving reads a user's history and filter in one MGET, and a video that left
        the history must already be in the filter when the shorter history appears
        (`streamstate.left_history`)."""
        bits, hashes = self.settings.seen_bloom_bits, self.settings.seen_bloom_hashes
        # Each video's bit positions as they are (a bit set twice is set): flattening, de-duplicating
        # and sorting them here cost ~2 µs per event, setting a bit twice in Redis far less.
        seen = {
            seen_key(user): [bloom_positions(v, bits, hashes) for v in videos]
            for user, videos in left_history.items()
            if videos
        }
        if seen:
            await self._add_seen(args=[orjson.dumps(seen), SEEN_TTL_S])
        await self.redis.mset(
            {history_key(user): orjson.dumps(history) for user, history in histories.items()}
        )

    async def read_progress(self, key: str, partitions: list[int]) -> dict[int, int]:
        values = await self.redis.hmget(key, [str(p) for p in partitions])
        return {p: int(v) for p, v in zip(partitions, values, strict=True) if v is not None}

    async def add_counters(
        self,
        progress_key: str,
        expect: Mapping[int, int],
        newest: Mapping[int, int],
        counters: Mapping[str, Mapping[str, float]],
        members: Mapping[str, set[str]],
    ) -> bool:
        """Add counters (HINCRBYFLOAT) and HyperLogLog members, moving the per-partition offsets they
        cover from `expect` to `newest` in one atomic step; False when the offsets were not `expect`."""
        hll = []
        for key, users in members.items():
            users_list = sorted(users)
            hll += [[key, users_list[i : i + 1000]] for i in range(0, len(users_list), 1000)]
        payload = {
            "expect": {str(p): expect.get(p, -1) for p in newest},
            "set": {str(p): o for p, o in newest.items()},
            "incr": [[key, fields] for key, fields in counters.items()],
            "hll": hll,
        }
        return bool(
            await self._add_counters(keys=[progress_key], args=[orjson.dumps(payload), OVERVIEW_TTL_S])
        )

    async def write_video_stats(
        self, stats: Mapping[str, Mapping[str, Any]], trend_ranks: Mapping[str, float]
    ) -> None:
        """Per-video documents and trending ranks: absolute values, so a replay rewrites the same."""
        pipe = self.redis.pipeline(transaction=False)
        if stats:
            pipe.hset(VIDEO_STATS_KEY, mapping={v: orjson.dumps(doc) for v, doc in stats.items()})
        if trend_ranks:
            pipe.zadd(TRENDING_KEY, dict(trend_ranks))
        await pipe.execute()

    async def write_neighbours(self, neighbours: Mapping[str, list]) -> None:
        """Replace each video's neighbour list (one string per video, one MSET for all), announced in the
        "neighbours" change feed in the same transaction."""
        if neighbours:
            pipe = self.redis.pipeline(transaction=True)
            pipe.mset({neighbours_key(v): orjson.dumps(lst) for v, lst in neighbours.items()})
            await self._record_changes(
                keys=[CHANGES_SEQ_KEY, changes_key("neighbours")], args=list(neighbours), client=pipe
            )
            await pipe.execute()

    async def write_catalog(self, videos: Mapping[str, Mapping[str, Any]]) -> None:
        """Metadata, creators and the fresh pool, announced in the "catalog" change feed."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(VIDEO_META_KEY, mapping={v: orjson.dumps(doc) for v, doc in videos.items()})
        pipe.hset(VIDEO_CREATOR_KEY, mapping={v: doc["creator_id"] for v, doc in videos.items()})
        pipe.zadd(FRESH_KEY, {v: doc["created_at"] for v, doc in videos.items()})
        pipe.srem(REMOVED_VIDEOS_KEY, *videos)  # published again after a take-down
        await self._record_changes(
            keys=[CHANGES_SEQ_KEY, changes_key("catalog")], args=list(videos), client=pipe
        )
        await pipe.execute()

    async def remove_videos(self, videos: list[str]) -> None:
        """Take videos down: out of the catalog, creators, fresh and trending, into the removed set that
        every serving process reads (announced in the "catalog" change feed)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(VIDEO_META_KEY, *videos)
        pipe.hdel(VIDEO_CREATOR_KEY, *videos)
        pipe.zrem(FRESH_KEY, *videos)
        pipe.zrem(TRENDING_KEY, *videos)
        pipe.sadd(REMOVED_VIDEOS_KEY, *videos)
        await self._record_changes(
            keys=[CHANGES_SEQ_KEY, changes_key("catalog")], args=list(videos), client=pipe
        )
        await pipe.execute()

    async def erase_users(self, users: list[str]) -> None:
        """A user's history and seen filter out of Redis (`DELETE /users/{id}`)."""
        await self.redis.delete(
            *(k for u in users for k in (history_key(u), seen_key(u), overexposed_key(u)))
        )

    async def write_overexposed(self, videos: Mapping[str, list[str]]) -> None:
        """Each user's overexposed videos (absolute: a replay writes the same), none: the key deleted."""
        pipe = self.redis.pipeline(transaction=False)
        present = {overexposed_key(u): orjson.dumps(v) for u, v in videos.items() if v}
        if present:
            pipe.mset(present)
        if absent := [overexposed_key(u) for u, v in videos.items() if not v]:
            pipe.delete(*absent)
        await pipe.execute()

    # --- Redis: reads by the serving views ------------------------------------------------
    async def user_state(self, user_id: str) -> tuple[list, bytes, list[str]]:
        """The user's recent history (newest first), seen filter (b"" when none) and overexposed videos:
        one MGET."""
        raw, seen, shown = await self.user_reads.mget(
            [history_key(user_id), seen_key(user_id), overexposed_key(user_id)]
        )
        return (orjson.loads(raw) if raw else []), (seen or b""), (orjson.loads(shown) if shown else [])

    async def neighbours_of(self, videos: list[str], per_video: int) -> dict[str, dict[str, float]]:
        if not videos:
            return {}
        values = await self.redis.mget([neighbours_key(v) for v in videos])
        out: dict[str, dict[str, float]] = {}
        for video, raw in zip(videos, values, strict=True):
            pairs = orjson.loads(raw) if raw else []
            if len(pairs) > per_video:  # lists are stored unsorted unless they were cut
                pairs = heapq.nlargest(per_video, pairs, key=itemgetter(1))
            out[video] = dict(pairs)
        return out

    async def top_trending(self, k: int) -> list[tuple[str, float]]:
        return await self.redis.zrevrange(TRENDING_KEY, 0, k - 1, withscores=True)

    async def video_stats(self, videos: list[str]) -> dict[str, Any]:
        return await self.get_json_fields(VIDEO_STATS_KEY, videos)

    async def video_meta(self, videos: list[str]) -> dict[str, Any]:
        return await self.get_json_fields(VIDEO_META_KEY, videos)

    async def overview(
        self, since_s: int, until_s: int
    ) -> tuple[dict[int, dict[str, float]], dict[int, int]]:
        """Per-second counters and per-minute active users between two epoch seconds."""
        seconds = list(range(since_s, until_s + 1))
        minutes = sorted({s // 60 for s in seconds})
        pipe = self.redis.pipeline(transaction=False)
        for s in seconds:
            pipe.hgetall(f"{OVERVIEW_PREFIX}{s}")
        for m in minutes:
            pipe.pfcount(f"{ACTIVE_USERS_PREFIX}{m}")
        results = await pipe.execute()
        per_second = {
            s: {k: float(v) for k, v in r.items()} for s, r in zip(seconds, results, strict=False) if r
        }
        active = dict(zip(minutes, results[len(seconds) :], strict=True))
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
        """The model registry's documents of a namespace, newest first (written by recstream.serving.model_store)."""
        from recstream.serving.model_store import MODELS

        return await self.find(MODELS, {"namespace": namespace}, sort=[("created_at", -1)], limit=limit)
