"""The publisher's buffering without Kafka (a stand-in for `BatchProducer`), and `recstream replay` through
it: partitions, order, linger, backpressure, errors, and the bytes each event becomes."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import recstream.producers.publish as publish
from recstream.datasets import iter_events_sorted
from recstream.kafka.batches import partition_for
from recstream.producers.publish import Publisher, PublishError
from recstream.producers.replay import replay, retimed
from recstream.records import Interaction, Video, encode
from recstream.settings import Settings
from tests.conftest import KUAIRAND_SAMPLE

PARTITIONS = 8


class FakeBatches:
    """`BatchProducer`'s interface: keeps what it is given; acknowledges at once unless `hold`, and
    fails the sends listed in `fail_sends` (by call number)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []
        self.acks: list[asyncio.Future] = []
        self.hold = False
        self.fail_sends: set[int] = set()
        self.closed = False

    async def producer(self) -> FakeBatches:
        return self

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))

    async def send(self, topic: str, partition: int, records: Iterable[tuple[bytes, bytes]]) -> list:
        ack = asyncio.get_running_loop().create_future()
        if len(self.sent) in self.fail_sends:
            ack.set_exception(RuntimeError("broker said no"))
        elif not self.hold:
            ack.set_result(None)
        self.sent.append((topic, partition, list(records)))
        self.acks.append(ack)
        return [ack]

    def release(self) -> None:
        for ack in self.acks:
            if not ack.done():
                ack.set_result(None)

    def records(self, topic: str) -> dict[int, list[tuple[bytes, bytes]]]:
        """Each partition's records in the order they were handed over."""
        out: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        for t, partition, records in self.sent:
            if t == topic:
                out[partition] += records
        return out

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBatches]:
    fake = FakeBatches()

    async def no_topics(settings: Settings) -> list[str]:
        return []

    monkeypatch.setattr("recstream.kafka.admin.ensure_topics", no_topics)
    monkeypatch.setattr("recstream.kafka.batches.BatchProducer", lambda settings: fake)
    yield fake


def events(n: int, users: int = 37) -> list[Interaction]:
    return [
        Interaction(type="view" if i % 3 else "like", user_id=f"u{i % users}", video_id=f"v{i}",
                    ts=1_700_000_000_000 + i, watch_time_ms=1000 if i % 3 else None)
        for i in range(n)
    ]  # fmt: skip


def check_partitions(records: dict[int, list[tuple[bytes, bytes]]]) -> None:
    for partition, got in records.items():
        assert all(partition_for(key, PARTITIONS) == partition for key, _ in got)


async def test_each_key_goes_to_its_partition_in_order_in_few_hand_overs(
    settings: Settings, batches: FakeBatches
) -> None:
    given = events(10_000)
    async with Publisher(settings) as pub:
        await pub.video(Video(video_id="v1", creator_id="c1", created_at=1))
        for e in given[:100]:  # one at a time (what `recstream simulate` does)...
            await pub.event(e)
        for start in range(100, len(given), 1000):  # ...and in chunks of encoded events (replay)
            await pub.encoded_events([(e.user_id.encode(), encode(e)) for e in given[start : start + 1000]])
    assert pub.sent == 10_001 and pub.error is None and batches.closed
    videos = batches.records(pub.topics.videos)
    assert sum(videos.values(), []) == [(b"v1", encode(Video(video_id="v1", creator_id="c1", created_at=1)))]
    check_partitions(videos)
    interactions = batches.records(pub.topics.interactions)
    check_partitions(interactions)
    per_user: dict[bytes, list[bytes]] = defaultdict(list)
    for records in interactions.values():
        for key, value in records:
            per_user[key].append(value)
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for e in given:
        expected[e.user_id.encode()].append(encode(e))
    assert per_user == expected
    assert len(batches.sent) <= 2 + (10_000 // publish.CHUNK_RECORDS + 1) * PARTITIONS  # no send per event


async def test_a_lone_record_goes_out_after_the_linger_without_a_flush(
    settings: Settings, batches: FakeBatches
) -> None:
    async with Publisher(settings) as pub:
        await pub.event(events(1)[0])
        assert batches.sent == []  # buffered...
        await asyncio.sleep(publish.LINGER_S * 4)
        assert len(batches.sent) == 1  # ...and handed over once the linger passed


async def test_flush_waits_until_everything_is_acknowledged(settings: Settings, batches: FakeBatches) -> None:
    batches.hold = True
    async with Publisher(settings) as pub:
        for e in events(50):
            await pub.event(e)
        flushing = asyncio.ensure_future(pub.flush())
        await asyncio.sleep(0.02)
        assert sum(len(r) for _, _, r in batches.sent) == 50 and not flushing.done()
        batches.release()
        await asyncio.wait_for(flushing, 1)


async def test_records_in_flight_are_bounded(
    settings: Settings, batches: FakeBatches, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "CHUNK_RECORDS", 100)
    monkeypatch.setattr(publish, "MAX_IN_FLIGHT", 1000)
    batches.hold = True
    given = [(e.user_id.encode(), encode(e)) for e in events(5000)]

    async def produce(pub: Publisher) -> None:
        for start in range(0, len(given), 100):
            await pub.encoded_events(given[start : start + 100])

    async with Publisher(settings) as pub:
        producing = asyncio.ensure_future(produce(pub))
        await asyncio.sleep(0.05)
        handed = sum(len(r) for _, _, r in batches.sent)
        assert not producing.done() and handed <= 1000 + 100  # waiting for acknowledgements
        batches.hold = False
        batches.release()
        await asyncio.wait_for(producing, 5)
    assert sum(len(r) for _, _, r in batches.sent) == 5000


async def test_a_failure_is_raised_at_the_end_and_the_rest_is_still_sent(
    settings: Settings, batches: FakeBatches
) -> None:
    batches.fail_sends = {0}
    with pytest.raises(PublishError, match="broker said no"):
        async with Publisher(settings) as pub:
            for e in events(20):
                await pub.event(e)
            await pub.flush()
            for e in events(20):
                await pub.event(e)
    assert sum(len(r) for _, _, r in batches.sent) == 40 and batches.closed


@pytest.mark.parametrize(
    "event",
    [
        Interaction(type="view", user_id="u1", video_id="v1", ts=5, watch_time_ms=10, duration_ms=20),
        Interaction(type="view", user_id="u1", video_id="v1", ts=1_700_000_000_000, watch_time_ms=0),
        Interaction(type="like", user_id="ts", video_id="ts", ts=1_700_000_000_000),  # ts last
    ],
)
def test_retimed_bytes_are_the_encoding_of_the_retimed_event(event: Interaction) -> None:
    for ts in (1, 1_800_000_000_123):
        assert retimed(encode(event), ts) == encode(event.model_copy(update={"ts": ts}))


async def test_replay_sends_the_sorted_events_bytes(settings: Settings, batches: FakeBatches) -> None:
    stats = await replay(settings, "kuairand", KUAIRAND_SAMPLE, None, None, None, False, 50, True)
    expected = list(iter_events_sorted("kuairand", KUAIRAND_SAMPLE, chunk_rows=50))
    assert stats["events"] == len(expected) == 226 and stats["first_ts"] == expected[0].ts
    topic = f"{settings.topic_prefix}.interactions"
    interactions = batches.records(topic)
    check_partitions(interactions)
    for partition, records in interactions.items():  # each partition: the sorted log's events of its keys
        assert records == [
            (e.user_id.encode(), encode(e))
            for e in expected
            if partition_for(e.user_id.encode(), PARTITIONS) == partition
        ]

    batches.sent.clear()
    stats = await replay(settings, "kuairand", KUAIRAND_SAMPLE, None, None, 10, True, 50, True)
    got = sum(batches.records(topic).values(), [])
    assert stats["events"] == len(got) == 10
    retimed_events = [Interaction.model_validate_json(value) for _, value in got]
    assert all(e.ts > expected[-1].ts for e in retimed_events)  # stamped now, not in 2022
    assert sorted(repr(e.model_copy(update={"ts": 1})) for e in retimed_events) == sorted(
        repr(e.model_copy(update={"ts": 1})) for e in expected[:10]
    )


async def test_replay_streams_a_file_in_time_order_and_shows_the_sort_of_one_that_is_not(
    settings: Settings, batches: FakeBatches, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = await replay(settings, "kuairand", KUAIRAND_SAMPLE, None, None, None, False, 50, False)
    err = capsys.readouterr().err
    assert not stats["streamed_without_sort"] and "sorting (not in time order)" in err and "226 rows" in err

    ordered = tmp_path / "log.csv"  # the sample's events in time order, one row per view
    header = (
        "user_id,video_id,time_ms,play_time_ms,duration_ms,is_like,is_forward,is_comment,is_follow,is_hate\n"
    )
    views = [e for e in iter_events_sorted("kuairand", KUAIRAND_SAMPLE) if e.type == "view"]
    ordered.write_text(header + "".join(
        f"{e.user_id},{e.video_id},{e.ts},{e.watch_time_ms},{e.duration_ms or 0},0,0,0,0,0\n" for e in views
    ))  # fmt: skip
    batches.sent.clear()
    stats = await replay(settings, "kuairand", ordered, None, None, None, False, 50, False)
    err = capsys.readouterr().err
    assert stats["streamed_without_sort"] and "sorting" not in err and stats["events"] == len(views)
    sent = sorted(sum(batches.records(f"{settings.topic_prefix}.interactions").values(), []))
    assert sent == sorted((e.user_id.encode(), encode(e)) for e in views)
