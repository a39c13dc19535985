"""`recstream rebuild`: rebuild every derived state from the log, under a new app id (Kappa reprocessing).

Workers of a new app id are a new consumer group with new table changelogs and RocksDB directories, so
they replay the interactions and videos topics from their first offset and build every table from
scratch; their Redis and MongoDB writes are absolute values keyed by what they describe, so they
overwrite whatever an older version left. The only derived data that is counted by increments, the
dashboard's per-second and per-video timeline counters, is deleted here first so the replay counts it
once. This is also how a deployment moves to a version whose table layouts changed (docs/architecture.md).

    recstream rebuild --app-id recstream-2      # then: RECSTREAM_APP_ID=recstream-2 recstream worker
"""

from __future__ import annotations

import argparse
import asyncio

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from recstream.kafka.config import client_kwargs
from recstream.redis_layout import ACTIVE_USERS_PREFIX, OVERVIEW_PREFIX
from recstream.settings import Settings

COUNTER_PATTERNS = (f"{OVERVIEW_PREFIX}*", "vseries:*", f"{ACTIVE_USERS_PREFIX}*", "progress:*")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app-id", required=True, help="the new app id (consumer group) the workers will run as"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="even if that group has committed offsets already (it is not fresh)",
    )


async def committed_offsets(settings: Settings, group: str, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**client_kwargs(settings), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        out = {}
        for topic in topics:
            for p in consumer.partitions_for_topic(topic) or ():
                tp = TopicPartition(topic, p)
                offset = await consumer.committed(tp)
                if offset is not None:
                    out[tp] = offset
        return out
    finally:
        await consumer.stop()


async def delete_counters(redis_url: str) -> int:
    client = aioredis.from_url(redis_url)
    deleted = 0
    try:
        for pattern in COUNTER_PATTERNS:
            batch = []
            async for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += await client.unlink(*batch)
                    batch = []
            if batch:
                deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


def run(args: argparse.Namespace) -> int:
    from recstream.kafka.topics import topic_names
    from recstream.settings import get_settings

    settings = get_settings()
    names = topic_names(settings)
    if args.app_id == settings.app_id and not args.force:
        print(f"rebuild: {args.app_id!r} is the current app id; a rebuild needs a new one (or --force)")
        return 2
    existing = asyncio.run(committed_offsets(settings, args.app_id, [names.interactions, names.videos]))
    if existing and not args.force:
        print(
            f"rebuild: consumer group {args.app_id!r} has committed offsets already; pick a new app id "
            "or pass --force"
        )
        return 2
    deleted = asyncio.run(delete_counters(settings.redis_url))
    print(f"rebuild: deleted {deleted} counter keys from Redis (they are recounted from the log).")
    print(
        f"rebuild: now start the workers as the new group; they replay {names.interactions} and "
        f"{names.videos} from the first offset:\n\n    RECSTREAM_APP_ID={args.app_id} recstream worker\n"
    )
    return 0
