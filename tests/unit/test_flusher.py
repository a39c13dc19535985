"""The flush takes the tables between two batches (never half of one), without a deadlock against a
revocation that flushes while holding the batch lock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import orjson

from recstream.streaming.commits import CommitGate
from recstream.streaming.sinks import Flusher
from recstream.streaming.tablecache import BatchTable

from .test_tablecache import _table


class _Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, list]] = []

    async def send(self, topic: str, partition: int, records: list) -> None:
        self.sent.append((topic, partition, records))

    async def settle(self) -> list[tuple[str, int, int]]:
        await asyncio.sleep(0.01)  # a Kafka round trip
        return []


def _flusher(tmp_path: Path) -> tuple[Flusher, BatchTable, _Outbox, CommitGate]:
    raw = _table(tmp_path)
    raw.changelog_topic = SimpleNamespace(get_topic_name=lambda: "t-changelog")
    table = BatchTable(raw, keep_keys=100, snapshot=dict)
    gate, outbox = CommitGate("flusher-test", ["kafka"]), _Outbox()
    return Flusher(gate, outbox, [table]), table, outbox, gate  # type: ignore[arg-type]


def test_a_flush_waits_for_the_batch_under_way_and_takes_its_whole_effect(tmp_path: Path) -> None:
    flusher, table, outbox, gate = _flusher(tmp_path)
    lock = asyncio.Lock()

    async def batch() -> None:
        async with lock:
            for offset in range(10):  # gives the loop back between events, as the history agent does
                table.put(0, "u", {"o": offset})
                await asyncio.sleep(0)
            gate.record({})

    async def main() -> None:
        running = asyncio.create_task(batch())
        await asyncio.sleep(0)  # the batch is half way
        await flusher.flush(lock)
        await running

    asyncio.run(main())
    assert [orjson.loads(v) for _t, _p, records in outbox.sent for _k, v in records] == [{"o": 9}]
    assert gate.done["kafka"] == 1  # the ticket of the batch it waited for


def test_a_revocation_flushing_under_the_batch_lock_does_not_deadlock_with_the_timer(tmp_path: Path) -> None:
    flusher, table, outbox, _gate = _flusher(tmp_path)
    lock = asyncio.Lock()
    table.put(0, "u", {"o": 1})

    async def revoke() -> None:
        await asyncio.sleep(0)  # the timer's flush has taken the tables and is waiting for Kafka
        async with lock:
            table.put(0, "u", {"o": 2})
            await flusher.flush(None)  # holds the batch lock already; waits for the timer's flush

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(flusher.flush(lock), revoke()), timeout=5)

    asyncio.run(main())
    assert [orjson.loads(v) for _t, _p, records in outbox.sent for _k, v in records] == [{"o": 1}, {"o": 2}]


def test_a_slow_mongo_write_makes_the_next_one_wait_its_share_and_a_failure_keeps_everything() -> None:
    """MongoSink: after a write of d seconds the timer skips it for d x (1/share - 1); a failed write
    keeps its documents staged (newer versions win) and does not move the sink's progress."""
    from recstream.streaming.sinks import MongoSink

    written: list[dict] = []
    fail = False

    async def upsert(collection: str, docs: dict) -> int:
        await asyncio.sleep(0.05)  # the server's time
        if fail:
            raise ConnectionError("down")
        written.append(dict(docs))
        return len(docs)

    async def main() -> None:
        nonlocal fail
        gate = CommitGate("mongo-test", ["mongo"])
        sink = MongoSink("user_profiles", gate, upsert, max_share=0.2)
        assert sink.due()
        sink.stage({"u1": {"n": 1}})
        gate.record({})
        await sink.write()
        assert written == [{"u1": {"n": 1}}] and gate.done["mongo"] == gate.seq
        assert not sink.due()  # ~0.05 x 4 = 0.2 s of rest
        await asyncio.sleep(0.1)
        assert not sink.due()
        await asyncio.sleep(0.15)
        assert sink.due()

        fail = True
        sink.stage({"u1": {"n": 2}, "u2": {"n": 1}})
        seq = gate.record({})
        await sink.write()
        assert gate.done["mongo"] < seq and sink.due()  # nothing marked, and retried at the next tick
        sink.stage({"u2": {"n": 3}})  # staged meanwhile: newer than the failed write's
        fail = False
        await sink.write()
        assert written[-1] == {"u1": {"n": 2}, "u2": {"n": 3}} and gate.done["mongo"] == seq

    asyncio.run(main())


def test_waiting_for_mongo_to_come_back_is_not_counted_as_write_time() -> None:
    """A write that first waits 0.5 s for the server (`ready`, a ping) and then takes 0.02 s rests
    ~0.02 x 9 s, not 0.52 x 9: the CI run where it did left MongoDB stale 45 s after a 5 s outage."""
    from recstream.streaming.sinks import MongoSink

    async def ready() -> None:
        await asyncio.sleep(0.5)  # server selection, the server restarting

    async def upsert(collection: str, docs: dict) -> int:
        await asyncio.sleep(0.02)
        return len(docs)

    async def main() -> None:
        gate = CommitGate("mongo-ready-test", ["mongo"])
        sink = MongoSink("user_profiles", gate, upsert, max_share=0.1, ready=ready)
        sink.stage({"u1": {"n": 1}})
        seq = gate.record({})
        await sink.write()
        assert gate.done["mongo"] == seq and not sink.due()
        await asyncio.sleep(0.4)  # 0.02 x 9 = 0.18 s of rest (timed with the wait: 4.7 s)
        assert sink.due()

    asyncio.run(main())
