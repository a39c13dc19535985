"""The pinned streaming-benchmark workload: what recstream and its peers (e.g. `quix_peer.py`) all consume.

`generate()` is `SimulatedWorld.events()` (sessions, Zipf popularity, taste-driven watch times and
actions), stamped as if the log had been written live at `rate` events/s, ending now. It runs at about
80,000 events/s here, so no separate vectorised generator is needed. `produce()` writes the events keyed
by user_id with the same partitioning Kafka's Java client and Faust (aiokafka) would pick, and
`reference_counts()` is the ground truth a peer's per-video lifetime counters must equal.

    python benchmarks/workload.py --bootstrap 127.0.0.1:9092 --topic quixbench.interactions-x --events 200000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import queue
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from multiprocessing.queues import Queue

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from recstream import scoring
from recstream.datasets.synthetic import SimulatedWorld, WorldConfig
from recstream.records import Interaction, encode, now_ms


@dataclass
class WorkloadConfig:
    events: int = 1_000_000
    users: int = 100_000
    videos: int = 20_000
    zipf: float = 1.1
    """Exponent of video popularity (Zipf)."""
    seed: int = 42
    rate: float = 25_000.0
    """Event timestamps advance as if the log had been written live at this many events/s."""


def world(cfg: WorkloadConfig) -> SimulatedWorld:
    return SimulatedWorld(
        WorldConfig(users=cfg.users, videos=cfg.videos, seed=cfg.seed, zipf_exponent=cfg.zipf)
    )


def generate(cfg: WorkloadConfig, end_ms: int | None = None) -> Iterator[Interaction]:
    """Exactly `cfg.events` interactions; the i-th is stamped end_ms - (events - 1 - i) / rate s.

    The sequence depends on the seed only (the clock never feeds the world's RNG), so two calls yield
    the same events, only their `ts` shifted by the time between the calls. A like or share shares
    the timestamp of the view it follows (the world stamps each watched video once).
    """
    step_ms = 1000.0 / cfg.rate
    start_ms = (now_ms() if end_ms is None else end_ms) - (cfg.events - 1) * step_ms
    emitted = 0

    def clock() -> int:  # called before each watched video's events are yielded: `emitted` is its index
        return int(start_ms + emitted * step_ms)

    for event in itertools.islice(world(cfg).events(clock=clock), cfg.events):
        yield event
        emitted += 1


def reference_counts(events: Iterable[Interaction]) -> dict[str, dict[str, float]]:
    """Per-video lifetime counters, summed exactly as recstream's engagement agent sums them."""
    params = scoring.EngagementParams()
    counts: dict[str, dict[str, float]] = {}
    for event in events:
        counts[event.video_id] = scoring.add_counts(
            counts.get(event.video_id, {}), scoring.event_counts(event, params)
        )
    return counts


async def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass  # an existing topic keeps its partition count: produce() partitions over what it has
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, topics: Iterable[str]) -> None:
    """Delete exactly the named topics (never a pattern: the broker is shared)."""
    names = list(topics)
    if not names:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


def _generate_chunks(cfg: WorkloadConfig, end_ms: int, partitions: list[int], out: Queue, size: int) -> None:
    """Child process: the events as (partition, key, value) chunks, then None.

    Generating is ~85 % of a single process's produce time, so it gets its own core; the parent only
    appends to batches and talks to the broker. Partitions are Kafka's default for a keyed record
    (murmur2 of the key), as Faust and the Java client would pick: one user stays on one partition.
    """
    partitioner = DefaultPartitioner()
    partition_of: dict[str, int] = {}  # murmur2 is pure Python: hash each user once
    chunk: list[tuple[int, bytes, bytes]] = []
    for event in generate(cfg, end_ms):
        p = partition_of.get(event.user_id)
        if p is None:
            p = partition_of[event.user_id] = partitioner(event.user_id.encode(), partitions, partitions)
        chunk.append((p, event.user_id.encode(), encode(event)))
        if len(chunk) >= size:
            out.put(chunk)
            chunk = []
    out.put(chunk)
    out.put(None)


async def produce(
    cfg: WorkloadConfig,
    bootstrap: str,
    topic: str,
    partitions: int = 8,
    end_ms: int | None = None,
    quiet: bool = False,
) -> int:
    """Produce the workload keyed by user_id as fast as possible; returns the count, all acked.

    One BatchBuilder per partition, sent when full: per-message `send()` costs a future and a
    coroutine per event, which caps a Python producer well below the generator's speed.
    """
    await ensure_topic(bootstrap, topic, partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=1 << 20, max_request_size=2 << 20
    )
    await producer.start()
    # fork, not spawn: spawn re-imports the caller's __main__, which breaks a harness script without an
    # `if __name__ == "__main__"` guard. The child touches neither the event loop nor the sockets.
    ctx = multiprocessing.get_context("fork")
    chunks: Queue = ctx.Queue(maxsize=16)
    loop = asyncio.get_running_loop()
    try:
        parts = sorted(await producer.partitions_for(topic))
        end = now_ms() if end_ms is None else end_ms
        child = ctx.Process(target=_generate_chunks, args=(cfg, end, parts, chunks, 5000), daemon=True)
        child.start()
        batches = {p: producer.create_batch() for p in parts}
        in_flight: list[asyncio.Future[object]] = []
        sent, t0, shown = 0, time.perf_counter(), time.perf_counter()

        async def ship(p: int) -> None:
            in_flight.append(await producer.send_batch(batches[p], topic, partition=p))
            batches[p] = producer.create_batch()
            if len(in_flight) >= 4 * len(parts):  # bound memory: wait for the older half to be acked
                half = len(in_flight) // 2
                await asyncio.gather(*in_flight[:half])
                del in_flight[:half]

        def next_chunk() -> list[tuple[int, bytes, bytes]] | None:
            while True:
                try:
                    return chunks.get(timeout=1.0)
                except queue.Empty:
                    if not child.is_alive():  # it died without its None: never wait forever
                        raise RuntimeError(f"the generator process exited ({child.exitcode})") from None

        # A thread waits on the queue so the event loop keeps sending batches meanwhile.
        while (chunk := await loop.run_in_executor(None, next_chunk)) is not None:
            for p, key, value in chunk:
                if batches[p].append(key=key, value=value, timestamp=None) is None:
                    await ship(p)  # full: send it, then the event goes in the fresh batch
                    batches[p].append(key=key, value=value, timestamp=None)
            sent += len(chunk)
            if not quiet and time.perf_counter() - shown > 2:
                shown = time.perf_counter()
                print(f"produce: {sent:,}/{cfg.events:,} ({sent / (shown - t0):,.0f}/s)", file=sys.stderr)
        for p in parts:
            if batches[p].record_count():
                await ship(p)
        await asyncio.gather(*in_flight)  # every batch acked (acks=all) before we report
        child.join()
    finally:
        await producer.stop()
    if not quiet:
        elapsed = time.perf_counter() - t0
        print(
            f"produce: {sent:,} events in {elapsed:.1f}s ({sent / elapsed:,.0f}/s, including the "
            "generator's start-up)",
            file=sys.stderr,
        )
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Produce the pinned benchmark workload to a Kafka topic.")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, default=8)
    defaults = WorkloadConfig()
    for f in fields(WorkloadConfig):
        parser.add_argument(
            f"--{f.name}", type=type(getattr(defaults, f.name)), default=getattr(defaults, f.name)
        )
    args = parser.parse_args(argv)
    cfg = WorkloadConfig(**{f.name: getattr(args, f.name) for f in fields(WorkloadConfig)})
    asyncio.run(produce(cfg, args.bootstrap, args.topic, args.partitions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
