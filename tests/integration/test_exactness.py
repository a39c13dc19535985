"""Exactly the figures the log implies, through kill -9, failover and sink outages.

Each test streams known events into a real cluster, breaks something mid-stream, and then requires
every user history, per-video lifetime counter and window, trending rank, co-visitation list and
per-second counter in Redis, and every MongoDB document, to equal the reference computation (the
agents' pure functions applied to the events in partition order: `recstream.devtools.reference`).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest
import redis

from recstream.devtools import reference
from recstream.devtools.devcluster import Cluster
from recstream.streamstate import StreamParams

from .conftest import get, post
from .faults import PrivateServer, kill9, produce, read_log, wait_committed, wait_exact, world_events

N = 50_000


def _stream_in_background(cluster: Cluster, events, rate: float) -> threading.Thread:  # noqa: ANN001
    thread = threading.Thread(target=lambda: asyncio.run(produce(cluster, events, rate)), daemon=True)
    thread.start()
    return thread


def _reference(cluster: Cluster, n: int) -> reference.Reference:
    log = asyncio.run(read_log(cluster, n))
    return reference.compute(log, StreamParams.from_settings(cluster.settings))


def _processed(url: str) -> float:
    """Interactions the worker's history agent has processed (its /metrics counter)."""
    for line in get(url + "/metrics")[1].get("text", "").splitlines():
        if line.startswith('recstream_messages_processed_total{agent="history"}'):
            return float(line.split()[-1])
    return 0.0


def _wait_processing(cluster: Cluster, url: str, at_least: float, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _processed(url) >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError("the worker did not start processing")


@pytest.mark.parametrize("second_dies", ["recovering", "processing"])
def test_kill9_mid_stream_and_during_recovery(services, tmp_path, second_dies) -> None:  # noqa: ANN001
    cluster = Cluster(services, tmp_path, redis_db=14)
    try:
        worker = cluster.start_worker()
        cluster.wait_settled()
        events = world_events(N)
        producer = _stream_in_background(cluster, events, rate=12_000)
        _wait_processing(cluster, worker.url, random.uniform(0.15, 0.5) * N)
        kill9(worker)  # mid-stream, with unflushed state, forwards in flight and offsets uncommitted
        again = cluster.start_worker(port=worker.port)  # same data directory: local RocksDB ahead of Kafka
        if second_dies == "recovering":
            time.sleep(random.uniform(0.5, 2.0))
        else:  # once it is a member of the group with a backlog queued: the next one rebalances under load
            _wait_processing(cluster, again.url, 1)
            time.sleep(random.uniform(0.0, 1.0))
        kill9(again)
        cluster.start_worker(port=worker.port)
        producer.join(120)
        diffs = wait_exact(cluster, _reference(cluster, N))
        assert diffs == [], "\n".join(diffs)
    finally:
        cluster.stop()


def test_two_workers_one_killed_the_other_takes_over(services, tmp_path) -> None:  # noqa: ANN001
    cluster = Cluster(services, tmp_path, redis_db=13)
    try:
        first = cluster.start_worker()
        cluster.start_worker()
        cluster.wait_settled()
        events = world_events(N, seed=11)
        producer = _stream_in_background(cluster, events, rate=12_000)
        _wait_processing(cluster, first.url, random.uniform(0.05, 0.2) * N / 2)
        kill9(first)  # its partitions move to the survivor after the session timeout
        producer.join(120)
        diffs = wait_exact(cluster, _reference(cluster, N), timeout=150)
        assert diffs == [], "\n".join(diffs)
        behind = wait_committed(cluster)  # the survivor commits the partitions it took over
        assert behind == {}, f"interactions partitions not committed to their end offsets: {behind}"
    finally:
        cluster.stop()


@pytest.mark.parametrize("sink", ["redis", "mongo"])
def test_sink_outage_mid_stream(services, tmp_path, sink: str) -> None:  # noqa: ANN001
    """Redis (then MongoDB) stopped for a few seconds mid-stream: batches retry until it is back, nothing
    is lost or doubled; with MongoDB down, Redis keeps being served."""
    server = PrivateServer(sink, tmp_path / sink)
    server.start()
    base = services.model_copy(update={f"{sink}_url": server.url})
    cluster = Cluster(base, tmp_path / "cluster", redis_db=0 if sink == "redis" else 12)
    try:
        worker = cluster.start_worker()
        cluster.wait_settled()
        events = world_events(20_000, seed=5)
        producer = _stream_in_background(cluster, events, rate=2_000)
        _wait_processing(cluster, worker.url, 4_000)
        server.stop()
        time.sleep(1)
        if sink == "mongo":  # the tables and the user-facing Redis path do not wait for MongoDB
            probe = redis.Redis.from_url(cluster.settings.redis_url)
            before = _processed(worker.url), probe.dbsize()
            time.sleep(2)
            after = _processed(worker.url), probe.dbsize()
            assert after[0] > before[0] and after[1] > before[1], (
                f"stalled while MongoDB was down: {before} {after}"
            )
        if sink == "redis":  # serving keeps answering from its last state, and says it is degraded
            status, body = get(worker.url + "/recommendations/someone-new")
            assert status == 200 and "redis unreachable" in body["degraded"] and body["items"], body
            status, body = get(worker.url + "/health")
            assert status == 503 and body["status"] == "degraded" and body["dependencies"]["redis"] != "ok"
        time.sleep(3)
        server.start()
        producer.join(120)
        # Within seconds of its return, not at the next periodic write: one outage's retries counted as
        # write time once put the neighbour lists' next write 84 s away.
        diffs = wait_exact(cluster, _reference(cluster, len(events)), timeout=30)
        assert diffs == [], "\n".join(diffs)
        retries = [
            line
            for line in get(worker.url + "/metrics")[1]["text"].splitlines()
            if line.startswith(f'recstream_sink_retries_total{{sink="{sink}"}}')
        ]
        assert retries and float(retries[0].split()[-1]) > 0, "the outage was not retried"
    finally:
        cluster.stop()
        server.stop()


def test_redis_flushed_is_rebuilt_from_the_tables(services, tmp_path) -> None:  # noqa: ANN001
    """Redis loses everything mid-stream (FLUSHDB) and nothing is re-published: every view a table holds
    comes back exact (histories, stats, trending, neighbour lists, catalog); only the dashboard's
    per-second counters and the seen filters (what left the histories before) restart."""
    from recstream.redis_layout import FRESH_KEY, VIDEO_CREATOR_KEY, VIDEO_META_KEY

    cluster = Cluster(services, tmp_path, redis_db=13)
    try:
        worker = cluster.start_worker()
        cluster.wait_settled()
        videos = [f"v{i}" for i in range(60)]  # world_events' catalog
        assert (
            post(
                worker.url + "/videos",
                {"videos": [{"video_id": v, "creator_id": f"c{i % 7}"} for i, v in enumerate(videos)]},
            )[0]
            == 202
        )
        events = world_events(10_000, seed=9)
        producer = _stream_in_background(cluster, events, rate=2_000)
        _wait_processing(cluster, worker.url, 3_000)
        client = redis.Redis.from_url(cluster.settings.redis_url)
        client.flushdb()
        producer.join(120)
        ref = _reference(cluster, len(events))
        diffs = wait_exact(cluster, ref, timeout=60, counters=False, seen=False)
        assert diffs == [], "\n".join(diffs)
        assert sorted(x.decode() for x in client.hkeys(VIDEO_META_KEY)) == sorted(videos)
        assert client.hget(VIDEO_CREATOR_KEY, "v8") == b"c1" and client.zcard(FRESH_KEY) == len(videos)
        rebuilds = [
            line
            for line in get(worker.url + "/metrics")[1]["text"].splitlines()
            if line.startswith("recstream_redis_rebuilds_total")
        ]
        assert rebuilds and float(rebuilds[0].split()[-1]) >= 1
        # Serving noticed too: the change feed went back, its state was loaded again.
        assert get(worker.url + "/recommendations/" + next(iter(ref.histories)))[1]["items"]
    finally:
        cluster.stop()
