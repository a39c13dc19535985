"""`recstream simulate` and `recstream replay` against the real broker, read back with aiokafka."""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from recstream.producers.replay import run_replay
from recstream.producers.simulator import SimConfig, SimulatedWorld, WorldConfig, run_simulation
from recstream.records import Interaction, Video
from recstream.settings import Settings
from tests.conftest import KUAIRAND_SAMPLE

RECSTREAM = Path(sys.executable).parent / "recstream"
SAMPLE = KUAIRAND_SAMPLE
KUAIRAND_FLAGS = ("is_like", "is_follow", "is_comment", "is_forward", "is_hate")


@pytest.fixture
def isolated(services: Settings) -> Iterator[Settings]:
    """Settings with a topic prefix of this test's own; its topics are deleted afterwards."""
    prefix = f"rs-simtest-{uuid.uuid4().hex[:8]}"
    yield services.model_copy(update={"topic_prefix": prefix})
    asyncio.run(_delete_topics(services.kafka_bootstrap, prefix + "."))


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def cli(settings: Settings, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSTREAM_")}
    env |= {
        "RECSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "RECSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
    }
    done = subprocess.run([str(RECSTREAM), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def read_topic(settings: Settings, topic: str, expected: int) -> list:
    """Every record of the topic (all partitions), waiting until `expected` have arrived (or 30 s)."""

    async def read() -> list:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        records: list = []
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                records += [r for rs in batch.values() for r in rs]
                if len(records) >= expected and not batch:
                    break  # one quiet poll after the expected count: no extra records hiding
        finally:
            await consumer.stop()
        return records

    return asyncio.run(read())


def by_partition_in_order(records: list) -> dict[int, list[Interaction]]:
    out: dict[int, list[Interaction]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out[r.partition].append(Interaction.model_validate_json(r.value))
    return out


def test_simulate_publishes_the_worlds_catalog_and_stream(isolated: Settings) -> None:
    stats = cli(isolated, "simulate", "--users", "40", "--videos", "150", "--rate", "0", "--events", "3000",
                "--seed", "11", "--quiet")  # fmt: skip
    assert stats["events"] == 3000 and stats["videos"] == 150

    videos = read_topic(isolated, f"{isolated.topic_prefix}.videos", 150)
    world = SimulatedWorld(WorldConfig(users=40, videos=150, seed=11))
    assert len(videos) == 150
    assert (
        {r.key.decode() for r in videos}
        == {Video.model_validate_json(r.value).video_id for r in videos}
        == {v.video_id for v in world.catalog()}
    )

    records = read_topic(isolated, f"{isolated.topic_prefix}.interactions", 3000)
    assert len(records) == 3000
    assert all(r.key.decode() == Interaction.model_validate_json(r.value).user_id for r in records)
    partitions = by_partition_in_order(records)
    assert len(partitions) > 1  # keyed by user: spread over partitions
    # Each user's events arrive exactly as the seed's generator made them, in order.
    expected: dict[str, list] = defaultdict(list)
    for e in itertools.islice(world.events(), 3000):
        expected[e.user_id].append(e.model_dump(exclude={"ts"}))
    got: dict[str, list] = defaultdict(list)
    for events in partitions.values():
        assert [e.ts for e in events] == sorted(e.ts for e in events)  # wall clock, in send order
        for e in events:
            got[e.user_id].append(e.model_dump(exclude={"ts"}))
    assert got == expected


def test_replay_kuairand_sample_in_time_order(isolated: Settings) -> None:
    with SAMPLE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    expected = sorted(
        (r["user_id"], r["video_id"], int(r["time_ms"]))
        for r in rows
        for _ in range(1 + sum(int(r[flag]) for flag in KUAIRAND_FLAGS))
    )
    stats = cli(isolated, "replay", "kuairand", str(SAMPLE), "--as-fast-as-possible")
    assert stats["events"] == len(expected) and stats["rows"] == len(rows) == 226 and stats["bad_rows"] == 0

    records = read_topic(isolated, f"{isolated.topic_prefix}.interactions", len(expected))
    partitions = by_partition_in_order(records)
    events = [e for es in partitions.values() for e in es]
    assert sorted((e.user_id, e.video_id, e.ts) for e in events) == expected  # original times kept
    for es in partitions.values():  # published in global time order, so every partition is too
        assert [e.ts for e in es] == sorted(e.ts for e in es)
    assert {e.watch_time_ms for e in events if e.type == "view"} == {int(r["play_time_ms"]) for r in rows}


def test_simulate_paces_to_the_rate(isolated: Settings) -> None:
    stats = run_simulation(isolated, SimConfig(users=30, videos=60, rate=1500, duration_s=1.0, quiet=True))
    assert stats["events"] == 1500
    assert 0.9 <= stats["elapsed_s"] < 5, stats["elapsed_s"]


def test_replay_videos_first_limit_speed_and_retime(isolated: Settings, tmp_path: Path) -> None:
    pairs = tmp_path / "MicroLens-tiny_pairs.tsv"
    pairs.write_text("1\t10 11 12\n2\t10 13\n")
    titles = tmp_path / "MicroLens-tiny_titles.csv"
    titles.write_text("item,title\n10,Ten\n11,Eleven\n12,Twelve\n13,Thirteen\n")
    before = int(time.time() * 1000)
    # In time order the rows sit at positions 0,0,1,1,2 (one minute apart); 6 events = the first 3 rows
    # (a view and a comment each). At 60x a minute passes in 1 s: the third row waits for it.
    stats = run_replay(
        isolated, "microlens", pairs, videos_path=titles, limit=6, speed=60, retime=True, quiet=True
    )
    assert stats["videos"] == 4 and stats["events"] == 6
    assert 0.9 <= stats["elapsed_s"] < 5, stats["elapsed_s"]

    videos = read_topic(isolated, f"{isolated.topic_prefix}.videos", 4)
    assert sorted(Video.model_validate_json(r.value).caption for r in videos) == [
        "Eleven",
        "Ten",
        "Thirteen",
        "Twelve",
    ]
    events = [
        e
        for es in by_partition_in_order(
            read_topic(isolated, f"{isolated.topic_prefix}.interactions", 6)
        ).values()
        for e in es
    ]
    assert sorted((e.user_id, e.video_id, e.type) for e in events) == [
        ("1", "10", "comment"), ("1", "10", "view"), ("1", "11", "comment"), ("1", "11", "view"),
        ("2", "10", "comment"), ("2", "10", "view"),
    ]  # fmt: skip
    assert all(e.ts >= before for e in events)  # retimed: stamped when sent, not 2023
