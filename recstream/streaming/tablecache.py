"""The per-batch state layer over Faust's RocksDB tables: each key read once, written once per flush.

Faust's `table[k] = v` writes RocksDB and publishes one changelog message per call (~100-130 µs each).
Agents here instead read a key from RocksDB once into a cache, change it in memory for as many events
and batches as arrive; at each flush (`recstream.streaming.sinks.Flusher`) every dirty key is written once:
RocksDB in one WriteBatch (`write_local`), the changelog as whole producer batches to the key's own
partition (the partition of the source topic that carried it, as Faust's recovery expects), and the
table's persisted changelog offset once Kafka acknowledged them (`set_persisted_offset`).

A key a batch touched is written even when every event of it was skipped as already applied: after a
crash, RocksDB may hold a value whose changelog record was never sent, and this re-sends it.

Values are JSON (orjson) and keys UTF-8, both raw in RocksDB and in the changelog, so Faust's recovery
and standby replicas copy them byte for byte.

Exactness does not depend on when a flush happens: every value carries the source offsets it has
applied, so after a crash the events replayed from the last committed offset that a flushed value
already holds are skipped (see `recstream.streaming.commits` for why the commit never passes a flush).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import rocksdict
from faust.types import TP

ENCODE_SLICE = 128
"""Keys encoded between two turns of the event loop in a flush (~1-3 ms of work; 512 neighbour maps held
the loop 30 ms and more on a busy host)."""
RELEASE_SLICE = 1024
"""Cached keys released between two turns of the event loop (a history is ~150 objects to free)."""


async def give_turn() -> None:
    """Let the other tasks of the event loop run."""
    await asyncio.sleep(0)


class BatchTable:
    """Cached, batch-flushed access to one Faust table's RocksDB partitions."""

    def __init__(
        self,
        table: Any,
        keep_keys: int = 0,
        snapshot: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
    ) -> None:
        """`keep_keys`: the cache outlives flushes while it holds at most this many keys (hot keys are
        then read from RocksDB and decoded once, not once per flush); past it, a flush releases what
        RocksDB now holds.

        `snapshot`: how `take_dirty` copies a value so that what is flushed is the value as it was
        between two batches, even if batches change it before it is encoded (e.g. `dict`, a shallow
        copy, for values whose parts are replaced, never changed in place). Without it a flush may
        write a newer value than the one taken, which is only right for tables whose agent forwards
        nothing (`recstream.streaming.sinks.Flusher`).

        `decode`: turns a stored value (as orjson parsed it) into what the agent works on, when that
        differs (e.g. tuples for arrays); whatever it returns must encode back to the same JSON."""
        self.table = table
        self.decode = decode
        self.keep_keys = keep_keys
        self.snapshot = snapshot
        self.cache: dict[int, dict[str, Any]] = defaultdict(dict)
        self.dirty: dict[int, set[str]] = defaultdict(set)

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def changelog_topic(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    def get(self, partition: int, key: str) -> Any:
        """The key's value in this partition (None when absent): memory first, else RocksDB once."""
        part = self.cache[partition]
        try:
            return part[key]
        except KeyError:
            raw = self.table.data._db_for_partition(partition).get(key.encode())
            value = part[key] = None if raw is None else self._loads(raw)
            return value

    def _loads(self, raw: bytes) -> Any:
        value = orjson.loads(raw)
        return value if self.decode is None else self.decode(value)

    def put(self, partition: int, key: str, value: Any) -> None:
        """Set the key's value; None deletes it at the next flush."""
        self.cache[partition][key] = value
        self.dirty[partition].add(key)

    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        """Every key of a partition with its newest value (memory over RocksDB)."""
        part = dict(self.cache.get(partition, {}))
        store = self.table.data
        for raw_key, raw in store._visible_items(
            store._db_for_partition(partition)
        ):  # skips Faust's offset key
            key = raw_key.decode()
            if key not in part:
                yield key, self._loads(raw)
        for key, value in part.items():
            if value is not None:
                yield key, value

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget what is cached for partitions this worker no longer owns (their new owner replays)."""
        for p in partitions:
            self.cache.pop(p, None)
            self.dirty.pop(p, None)

    def take_dirty(self) -> dict[int, list[tuple[str, Any]]]:
        """Every key changed since the last take with its value (copied by `snapshot` when given):
        what the next `write_local` writes. Called between two batches (`Flusher.flush`)."""
        dirty, self.dirty = self.dirty, defaultdict(set)
        copy = self.snapshot
        taken: dict[int, list[tuple[str, Any]]] = {}
        for partition, keys in dirty.items():
            values, records = self.cache[partition], []
            for key in keys:
                value = values.get(key)  # None: deleted (RocksDB, and a tombstone)
                records.append((key, value if value is None or copy is None else copy(value)))
            taken[partition] = records
        return taken

    async def write_local(
        self, taken: dict[int, list[tuple[str, Any]]], pause: Callable[[], Awaitable[None]] = give_turn
    ) -> dict[int, list[tuple[bytes, bytes]]]:
        """Write what `take_dirty` took to RocksDB in one WriteBatch per partition; returns the records,
        which the caller publishes to the changelog. (RocksDB ahead of the changelog is safe: a value
        recovered from an older changelog record carries older applied offsets, so the events after
        them are applied again.)

        Encoding thousands of values takes tens of milliseconds, so it awaits `pause` every
        ENCODE_SLICE keys (the agents pass one that also waits out a history batch under way): a user's
        own event is not held up behind a flush. Batches may run meanwhile;
        a key they change stays dirty for the next flush, and the cache keeps every value until RocksDB
        holds it (a read in between never sees an older value). Afterwards, past `keep_keys`, the cache
        keeps only keys dirtied since (the rest is released)."""
        out: dict[int, list[tuple[bytes, bytes]]] = {}
        store = self.table.data
        done = 0
        for partition, values in taken.items():
            records = out[partition] = []
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value in values:
                if done % ENCODE_SLICE == ENCODE_SLICE - 1:
                    await pause()
                done += 1
                raw_key = key.encode()
                if value is None:
                    records.append((raw_key, None))
                    batch.delete(raw_key)
                else:
                    raw = orjson.dumps(value)
                    records.append((raw_key, raw))
                    batch.put(raw_key, raw)
            store._db_for_partition(partition).write(batch)
        if sum(map(len, self.cache.values())) > self.keep_keys:
            await self._release(pause)
        return out

    async def _release(self, pause: Callable[[], Awaitable[None]]) -> None:
        """Drop every cached key that RocksDB holds as cached, i.e. all but those dirtied since they were
        taken, RELEASE_SLICE keys between two turns of the event loop: freeing tens of thousands of
        decoded values at once (millions of objects) held the loop, and every user's next event, for up
        to ~0.3 s. A key a batch dirties meanwhile is kept with its newer value."""
        for partition, part in list(self.cache.items()):
            keys = list(part)
            for i in range(0, len(keys), RELEASE_SLICE):
                if i:
                    await pause()
                dirty = self.dirty.get(partition, ())
                for key in keys[i : i + RELEASE_SLICE]:
                    if key not in dirty:
                        part.pop(key, None)
            await pause()

    def set_persisted_offset(self, partition: int, offset: int) -> None:
        """Recovery of this partition may start after `offset` of the changelog (Kafka holds it)."""
        self.table.data.set_persisted_offset(TP(self.changelog_topic, partition), offset)
