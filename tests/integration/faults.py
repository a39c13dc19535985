"""Helpers of the exactness and fault tests: known events into a cluster's log, the reference state
they imply, private Redis / MongoDB-protocol servers a test may stop and start, kill -9."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pymongo
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from recstream.datasets.synthetic import SimulatedWorld, WorldConfig
from recstream.devtools import reference
from recstream.devtools.devcluster import Cluster, WorkerProcess, free_port
from recstream.kafka.admin import ensure_topics
from recstream.records import Interaction, encode, now_ms
from recstream.streamstate import StreamParams


def world_events(n: int, users: int = 400, videos: int = 60, seed: int = 7) -> list[Interaction]:
    """n simulated events, stamped 1 ms apart and ending now. Few videos: no neighbour list reaches K."""
    start = now_ms() - n
    ticks = itertools.count()
    world = SimulatedWorld(WorldConfig(users=users, videos=videos, seed=seed))
    return list(itertools.islice(world.events(clock=lambda: start + next(ticks)), n))


async def produce(
    cluster: Cluster,
    events: list[Interaction],
    rate: float | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Send the events keyed by user (as any producer would), optionally paced at `rate` per second and
    only until `stop` is set; returns how many were sent (all acknowledged)."""
    s = cluster.settings
    await ensure_topics(s)
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=5, acks="all")
    await producer.start()
    sent = 0
    try:
        topic, t0 = f"{s.topic_prefix}.interactions", time.monotonic()
        for i, event in enumerate(events):
            if stop is not None and stop.is_set():
                break
            await producer.send(topic, key=event.user_id.encode(), value=encode(event))
            sent = i + 1
            if rate and i % 100 == 99:
                await asyncio.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def read_log(cluster: Cluster, n: int, timeout: float = 60) -> list[tuple[int, int, Interaction]]:
    """The interactions topic as the agents see it, once it holds n events: (partition, offset, event),
    partition by partition."""
    deadline = time.monotonic() + timeout
    out = await read_whole_log(cluster, timeout)
    while len(out) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        out = await read_whole_log(cluster, timeout)
    assert len(out) == n, f"read {len(out)} of {n} events back"
    return out


def wait_exact(
    cluster: Cluster,
    ref: reference.Reference,
    timeout: float = 120,
    counters: bool = True,
    seen: bool = True,
) -> list[str]:
    """Until Redis and MongoDB equal the reference (then []), or the differences left at the deadline."""
    params = StreamParams.from_settings(cluster.settings)
    # Seen filters of users whose filter survives: a flushed Redis loses what left the histories before.
    seen_bloom = (cluster.settings.seen_bloom_bits, cluster.settings.seen_bloom_hashes) if seen else None
    client = redis.Redis.from_url(cluster.settings.redis_url)
    mongo = pymongo.MongoClient(cluster.settings.mongo_url)[cluster.settings.mongo_db]
    deadline = time.monotonic() + timeout
    diffs: list[str] = ["not checked"]
    while time.monotonic() < deadline:
        diffs = reference.compare_redis(
            client, ref, params, counters=counters, seen_bloom=seen_bloom
        ) or reference.compare_mongo(mongo, ref, params)
        if not diffs:
            return []
        time.sleep(1)
    return diffs + worker_warnings(cluster)


def worker_warnings(cluster: Cluster, last: int = 30) -> list[str]:
    """The workers' warnings and errors (rebalance chatter left out), for a failure message."""
    noise = ("Heartbeat failed", "because it is rebalancing")
    lines = [
        f"{log.name}: {line}"
        for log in sorted(cluster.data_dir.glob("worker-*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if ("[WARNING]" in line or "[ERROR]" in line) and not any(n in line for n in noise)
    ]
    return lines[-last:]


def kill9(worker: WorkerProcess) -> None:
    assert worker.proc is not None and worker.proc.poll() is None, "worker not running"
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()


class PrivateServer:
    """A redis-server or nx-27017 of a test's own on a free port, which the test may stop and start."""

    def __init__(self, kind: str, home: Path) -> None:
        self.kind, self.home, self.port = kind, home, free_port()
        self.proc: subprocess.Popen | None = None
        home.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return (
            f"redis://127.0.0.1:{self.port}/0"
            if self.kind == "redis"
            else f"mongodb://127.0.0.1:{self.port}/"
        )

    def start(self) -> None:
        if self.kind == "redis":
            cmd = [
                shutil.which("redis-server") or "/usr/bin/redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.home),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--logfile",
                str(self.home / "redis.log"),
            ]
        else:
            cmd = [
                str(Path(sys.executable).parent / "nx-27017"),
                "--data-dir",
                str(self.home / "db"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-file",
                str(self.home / "nx.log"),
            ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.kind == "redis":
                    redis.Redis(port=self.port, socket_timeout=1).ping()
                else:
                    pymongo.MongoClient(self.url, serverSelectionTimeoutMS=500).admin.command("ping")
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError(f"private {self.kind} did not start")

    def stop(self) -> None:
        """A clean stop: Redis writes its append-only file first, so nothing acknowledged is lost."""
        if self.proc and self.proc.poll() is None:
            if self.kind == "redis":
                try:
                    redis.Redis(port=self.port, socket_timeout=5).shutdown()
                except redis.ConnectionError:
                    pass  # the server closes the connection as it exits
            else:
                self.proc.terminate()
            self.proc.wait(20)


def free_port_pair() -> int:
    """A free port p whose neighbour p + 1 is free too (a KRaft broker's listener and its controller's)."""
    import socket

    for _ in range(100):
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no two consecutive free ports")


class PrivateKafka:
    """A single-node KRaft Kafka of a test's own (broker on a free port, its controller on the next),
    with its data and logs under `home`, which the test may stop and start again on the same ports and
    data: the broker `recstream services up` runs (same jars, java command, server.properties, storage
    formatting: `recstream.devtools.services.definitions.kafka_service`), with a smaller heap to start faster.
    `start_seconds` records how long each start took until the broker answered a metadata request."""

    def __init__(self, home: Path, base: object | None = None, heap: str = "512m") -> None:
        from recstream.devtools.services.definitions import kafka_service
        from recstream.settings import Settings, get_settings

        settings = base if isinstance(base, Settings) else get_settings()
        self.home, self.port = home, free_port_pair()
        self.settings = settings.model_copy(
            update={
                "kafka_bootstrap": f"127.0.0.1:{self.port}",
                "manage_kafka": True,
                "data_dir": home,
                "kafka_heap": heap,
            }
        )
        service = kafka_service(self.settings)
        assert service is not None
        service.start_timeout_s, service.stop_timeout_s = 60.0, 30.0
        self.service = service
        self.start_seconds: list[float] = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.home / "kafka" / "logs"

    def start(self) -> float:
        """Start it (formatting its storage the first time); returns once it answers, with the seconds taken."""
        t0 = time.monotonic()
        self.service.start()
        self.start_seconds.append(time.monotonic() - t0)
        return self.start_seconds[-1]

    def stop(self) -> None:
        """A clean stop (SIGTERM to its process group, then wait; SIGKILL only after 30 s)."""
        self.service.stop()


async def read_whole_log(cluster: Cluster, timeout: float = 60) -> list[tuple[int, int, Interaction]]:
    """Everything the interactions topic holds, up to each partition's end offset now (however many events
    that is, duplicates included): (partition, offset, event), partition by partition."""
    s = cluster.settings
    topic = f"{s.topic_prefix}.interactions"
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(s.interactions_partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: list[tuple[int, int, Interaction]] = []
        left = {tp for tp in parts if ends[tp] > 0}
        deadline = time.monotonic() + timeout
        while left and time.monotonic() < deadline:
            for tp, msgs in (await consumer.getmany(*left, timeout_ms=500)).items():
                out += [
                    (tp.partition, m.offset, Interaction.model_validate_json(m.value))
                    for m in msgs
                    if m.offset < ends[tp]
                ]
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        assert not left, f"partitions not read to their end offsets {ends}: {left}"
        return sorted(out, key=lambda e: (e[0], e[1]))
    finally:
        await consumer.stop()


async def _committed_and_ends(cluster: Cluster) -> tuple[dict[int, int | None], dict[int, int]]:
    """The worker group's committed offset and the end offset of each interactions partition."""
    s = cluster.settings
    topic = f"{s.topic_prefix}.interactions"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap, group_id=s.app_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(s.interactions_partitions)]
        ends = await consumer.end_offsets(parts)
        committed = {tp.partition: await consumer.committed(tp) for tp in parts}
        return committed, {tp.partition: ends[tp] for tp in parts}
    finally:
        await consumer.stop()


def wait_committed(cluster: Cluster, timeout: float = 30) -> dict[int, int | None]:
    """Until the workers have committed every interactions partition to its end offset (every event's
    effects durable everywhere: see `recstream.streaming.commits`); the gaps left at the deadline,
    {partition: committed} ({} when all are committed)."""
    deadline = time.monotonic() + timeout
    while True:
        committed, ends = asyncio.run(_committed_and_ends(cluster))
        behind = {p: committed[p] for p, end in ends.items() if end and committed[p] != end}
        if not behind or time.monotonic() > deadline:
            return behind
        time.sleep(1)
