"""Upgrading is a tested path: a worker of this version rebuilds everything from a log an older version
wrote and consumed, after `recstream rebuild` (new app id, counters recounted)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from recstream.devtools.devcluster import Cluster
from recstream.records import encode

from .faults import produce, wait_exact, world_events
from .test_exactness import _reference


async def _as_an_old_version_left_it(cluster: Cluster, events) -> None:  # noqa: ANN001
    """What a worker of the previous version leaves behind: its group's offsets committed at the end of
    the log, its internal topic in the old format, its Redis keys in the old layout."""
    s = cluster.settings
    old_internal = f"{s.topic_prefix}.video-events"  # one Interaction per message, no longer read
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(old_internal, s.interactions_partitions, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    await producer.start()
    for e in events[:100]:
        await producer.send(old_internal, key=e.video_id.encode(), value=encode(e))
    await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap, group_id=s.app_id, enable_auto_commit=False
    )
    await consumer.start()
    tps = [TopicPartition(f"{s.topic_prefix}.interactions", p) for p in range(s.interactions_partitions)]
    consumer.assign(tps)
    await consumer.commit(await consumer.end_offsets(tps))
    await consumer.stop()
    r = redis.Redis.from_url(s.redis_url)
    r.zadd(f"nbrs:{events[0].video_id}", {"stale": 1.0})  # the old sorted-set neighbour lists
    r.hincrbyfloat(f"overview:{events[0].ts // 1000}", "view", 999)  # old increments, no offsets
    r.hset("video:stats", events[0].video_id, b'{"views": 123456}')


def test_this_version_rebuilds_from_an_older_log(services, tmp_path) -> None:  # noqa: ANN001
    cluster = Cluster(services, tmp_path, redis_db=11)
    try:
        events = world_events(5_000, seed=3)
        asyncio.run(produce(cluster, events))
        asyncio.run(_as_an_old_version_left_it(cluster, events))
        new_app_id = cluster.settings.app_id + "-v2"
        env = {**cluster.env}
        done = subprocess.run(
            [str(Path(sys.executable).parent / "recstream"), "rebuild", "--app-id", new_app_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"RECSTREAM_APP_ID={new_app_id}" in done.stdout
        again = subprocess.run(
            [str(Path(sys.executable).parent / "recstream"), "rebuild", "--app-id", cluster.settings.app_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 2  # the running app id is not a rebuild
        cluster.env["RECSTREAM_APP_ID"] = new_app_id
        cluster.start_worker()
        diffs = wait_exact(cluster, _reference(cluster, len(events)))
        assert diffs == [], "\n".join(diffs)
    finally:
        cluster.stop()
