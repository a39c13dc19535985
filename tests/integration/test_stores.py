"""Redis and the MongoDB-protocol server through the project's async store module."""

from __future__ import annotations

import uuid

import pytest

from recstream.serving.stores import Stores
from recstream.settings import Settings


@pytest.fixture
async def stores(services: Settings):
    s = Stores(services)
    yield s
    await s.close()


async def test_redis_round_trip(stores: Stores) -> None:
    key = f"test:{uuid.uuid4().hex}"
    await stores.set_json_fields(key, {"a": {"views": 3}, "b": [1, 2]})
    assert await stores.get_json_fields(key, ["a", "b", "missing"]) == {"a": {"views": 3}, "b": [1, 2]}
    await stores.redis.zadd(key + ":z", {"x": 1.5, "y": 3.0})
    assert await stores.redis.zrevrange(key + ":z", 0, -1) == ["y", "x"]
    await stores.redis.delete(key, key + ":z")


async def test_mongo_crud_index_and_group(stores: Stores) -> None:
    coll = f"test_{uuid.uuid4().hex[:8]}"
    c = stores.db[coll]
    await c.insert_many(
        [
            {"_id": "v1", "creator": "c1", "views": 10},
            {"_id": "v2", "creator": "c1", "views": 30},
            {"_id": "v3", "creator": "c2", "views": 20},
        ]
    )
    await c.create_index([("views", -1)], name="views_desc")
    # Match by indexed field: nx-27017 names indexes itself and reports them ascending.
    assert any(ix["key"][0][0] == "views" for ix in (await c.index_information()).values())

    found = await stores.find(coll, {"creator": "c1"}, sort=[("views", -1)])
    assert [d["_id"] for d in found] == ["v2", "v1"]

    await stores.increment_many(coll, {"v1": {"views": 5}, "v4": {"views": 7}})
    assert (await c.find_one({"_id": "v1"}))["views"] == 15
    assert (await c.find_one({"_id": "v4"}))["views"] == 7  # $inc upsert created it

    await stores.upsert_many(coll, {"v4": {"creator": "c2"}})
    totals = await stores.aggregate(
        coll,
        [
            {"$group": {"_id": "$creator", "views": {"$sum": "$views"}, "n": {"$sum": 1}}},
            {"$sort": {"_id": 1}},
        ],
    )
    assert totals == [{"_id": "c1", "views": 45, "n": 2}, {"_id": "c2", "views": 27, "n": 2}]
    await c.drop()


async def test_upserts_beyond_one_bulk_write_are_all_written_and_erasures_apply(stores: Stores) -> None:
    """More documents than one bulk write takes (MONGO_SLICE): written in several, none lost, and a None
    in a later slice erases its document."""
    from recstream.serving.stores import MONGO_SLICE

    coll = f"test_{uuid.uuid4().hex[:8]}"
    n = 2 * MONGO_SLICE + 7
    assert await stores.upsert_many(coll, {f"u{i}": {"i": i} for i in range(n)}) == n
    await stores.upsert_many(
        coll, {**{f"w{i}": {"i": i} for i in range(MONGO_SLICE)}, "u0": {"i": -1}, f"u{n - 1}": None}
    )
    docs = {d["_id"]: d["i"] for d in await stores.find(coll)}
    assert len(docs) == n - 1 + MONGO_SLICE and docs["u0"] == -1 and f"u{n - 1}" not in docs
    assert docs[f"u{MONGO_SLICE + 3}"] == MONGO_SLICE + 3
    await stores.db[coll].drop()


async def test_seen_filters_hold_exactly_the_bits_setbit_would_set(stores: Stores) -> None:
    """The seen script sets each user's bits with BITFIELD (in chunks of 1,000 bits): the filter must
    be the very string SETBIT would build, for one video, for many (past one chunk), and again after
    a replay of the same batch."""
    import redis.asyncio as aioredis

    from recstream.redis_layout import bloom_positions, history_key, seen_key

    raw = aioredis.from_url(stores.settings.redis_url)  # bytes: a filter is not text
    bits, hashes = stores.settings.seen_bloom_bits, stores.settings.seen_bloom_hashes
    run = uuid.uuid4().hex[:8]
    new_videos = {
        f"{run}-one": {"v1"},
        f"{run}-many": {f"v{i}" for i in range(300)},  # 2,100 bits: three BITFIELD calls
        f"{run}-none": set(),
    }
    try:
        for _ in range(2):  # the second time as a replay would: nothing may change
            await stores.write_user_state({u: [] for u in new_videos}, new_videos)
            for user, videos in new_videos.items():
                expected = bytearray()
                for video in videos:
                    for b in bloom_positions(video, bits, hashes):
                        if b // 8 >= len(expected):
                            expected.extend(bytes(b // 8 + 1 - len(expected)))
                        expected[b // 8] |= 0x80 >> (b % 8)
                got = await raw.get(seen_key(user))
                if not videos:
                    assert got is None, user
                    continue
                assert got == bytes(expected), user
                assert 0 < await raw.ttl(seen_key(user))
    finally:
        await raw.delete(*(seen_key(u) for u in new_videos), *(history_key(u) for u in new_videos))
        await raw.aclose()


async def test_health_reports_both(stores: Stores) -> None:
    assert await stores.health() == {"redis": "ok", "mongo": "ok"}


async def test_pipelined_reads_answer_each_caller_in_order_and_survive_a_dropped_connection(
    services: Settings,
) -> None:
    import asyncio

    from recstream.serving.resp import PipelinedRedis

    url = services.redis_url.rsplit("/", 1)[0] + "/3"  # a DB of its own: SELECT happens on connect
    client, writer = PipelinedRedis(url), Stores(Settings(redis_url=url))
    tag = uuid.uuid4().hex
    try:
        await writer.redis.mset({f"{tag}:{i}": f"value-{i}" for i in range(200)})
        replies = await asyncio.gather(*(client.mget([f"{tag}:{i}", f"{tag}:missing"]) for i in range(200)))
        assert replies == [[f"value-{i}".encode(), None] for i in range(200)]
        host, port = client._protocol.transport.get_extra_info("sockname")[:2]
        assert await writer.redis.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")  # only ours
        await asyncio.sleep(0.1)
        assert await client.mget([f"{tag}:1"]) == [b"value-1"]  # the next request reconnects
    finally:
        await writer.redis.delete(*(f"{tag}:{i}" for i in range(200)))
        await writer.close()
        await client.aclose()
